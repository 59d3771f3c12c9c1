"""Few-shot demonstrations: the most similar examples, nearest the question, after the system prompt."""

import json

import pytest

from onthejob.errors import ConfigError
from onthejob.eval.fewshot import Shots

PAIRS = [("How many days of annual leave do I get?", "27 days."),
         ("Who is my HR contact?", "Tamsin Adeyemi."),
         ("Can I carry over unused annual leave days?", "Up to 5 days."),
         ("What is the notice period for managers?", "Three months."),
         ("Please tell me: how do I claim expenses?", "Through Tidepool.")]


def test_the_most_similar_examples_are_chosen_and_come_last():
    shots = Shots(PAIRS, k=2)
    assert shots.nearest("how much annual leave days do staff get") == [0, 2]
    system = {"role": "system", "content": "Be brief."}
    question = {"role": "user", "content": "How many annual leave days do I get?"}
    messages = shots.demonstrate([system, question])
    assert messages == [system,
                        {"role": "user", "content": PAIRS[2][0]}, {"role": "assistant", "content": PAIRS[2][1]},
                        {"role": "user", "content": PAIRS[0][0]}, {"role": "assistant", "content": PAIRS[0][1]},
                        question]


def test_common_words_weigh_less_than_distinctive_ones():
    pairs = [(f"Please tell me: {q}", a) for q, a in PAIRS]  # every example shares "please tell me"
    assert Shots(pairs, k=1).nearest("please tell me who my HR contact is") == [1]


def test_examples_come_from_training_files(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": q},
                                                     {"role": "assistant", "content": a}]}) + "\n" for q, a in PAIRS))
    shots = Shots.from_files([path], k=3)
    assert shots.pairs == PAIRS and shots.k == 3
    with pytest.raises(ConfigError, match="no examples to show"):
        Shots([], k=1)
