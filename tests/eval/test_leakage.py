import json

import numpy as np

from onthejob.data.schema import Example
from onthejob.eval.data import EvalItem
from onthejob.eval.leakage import find_leaks, run_leakage


def train(*questions):
    return [Example([{"role": "user", "content": q}, {"role": "assistant", "content": "answer"}],
                    source="train.jsonl", line=n) for n, q in enumerate(questions, 1)]


def evals(*questions):
    return [EvalItem(n, [{"role": "user", "content": q}], "ref") for n, q in enumerate(questions, 1)]


TRAIN = train(
    "How many days of annual leave do staff get after five years of service?",
    "What is the probation period for staff appointed at Grade N1 to N3?",
    "Context: the handbook, section 4. Question: can the probation period be extended for staff on contract?",
)


def test_exact_near_and_clean():
    leaks = find_leaks(TRAIN, evals(
        "how many days of ANNUAL leave do staff get after five years of service",  # exact after normalising
        "What is the probation period for staff appointed at Grade N1 to N6?",  # last word changed
        "Can the probation period be extended for staff on contract?",  # pasted into a longer prompt
        "Who approves unpaid leave for a staff member?",  # not in training
    ))
    got = {(k.eval_line, k.train, k.kind) for k in leaks}
    assert got == {(1, "train.jsonl:1", "exact"), (2, "train.jsonl:2", "near"), (3, "train.jsonl:3", "near")}
    score = {k.eval_line: k.score for k in leaks}
    # line 2, normalised: 12 words ("the" dropped), so 5 8-grams a side; only the last 8-gram
    # holds the changed word, so 4 are shared.
    # containment 4/5 = 0.8 beats Jaccard 4/(5+5-4) = 0.67
    assert score[2] == 0.8
    # line 3: 9 words, 2 8-grams, both inside the training prompt: containment 1
    assert score[3] == 1.0


def test_threshold_and_ngram_control_near():
    items = evals("What is the probation period for staff appointed at Grade N4 to N6?")
    # words 10 and 12 changed: 8-grams starting at 1 and 2 of 5 are shared: containment 2/5
    assert find_leaks(TRAIN, items) == []
    assert [k.score for k in find_leaks(TRAIN, items, threshold=0.4)] == [0.4]
    # 4-grams: 9 a side, those starting at words 1-6 avoid word 10: containment 6/9
    assert [k.score for k in find_leaks(TRAIN, items, ngram=4)] == [round(6 / 9, 4)]
    assert find_leaks(TRAIN, items, ngram=20, threshold=0.1) == []  # one 12-gram, not shared
    assert find_leaks(train("Totally unrelated text about printers and cables"), items) == []


def test_short_questions_only_leak_whole():
    leaks = find_leaks(train("Is overtime paid for staff?"), evals("overtime paid", "Is overtime paid?"))
    assert [(k.eval_line, k.kind) for k in leaks] == [(1, "near"), (2, "near")]  # contained whole
    assert find_leaks(train("Is overtime paid for staff?"), evals("paid overtime")) == []


class FakeEmbedder:
    """Vectors by lookup: the reworded question points the same way as the training one."""

    def encode(self, texts):
        table = {"annual": [1.0, 0.0], "holidays": [0.99, 0.141], "printer": [0.0, 1.0]}
        return np.asarray([next(v for k, v in table.items() if k in t.lower()) for t in texts])


def test_embedding_leaks_only_when_asked():
    train_set = train("How much annual leave do I get?", "My printer is broken")
    items = evals("Number of holidays per year?")
    assert find_leaks(train_set, items) == []
    [leak] = find_leaks(train_set, items, embed=True, embedder=FakeEmbedder())
    assert (leak.kind, leak.train) == ("embedding", "train.jsonl:1") and leak.score >= 0.95


def test_run_leakage_reads_files_and_reports(tmp_path):
    t = tmp_path / "train.jsonl"
    t.write_text("".join(json.dumps(e.to_record()) + "\n" for e in TRAIN), encoding="utf-8")
    e = tmp_path / "eval.jsonl"
    records = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "a"}]}
               for q in ("What is the probation period for staff appointed at Grade N1 to N3?", "Who are you?")]
    e.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    leaks, text = run_leakage(t, e)
    assert [(k.eval_line, k.train, k.kind) for k in leaks] == [(1, f"{t}:2", "exact")]
    assert text.splitlines()[0] == "1 of 2 eval questions also appear in the 3 training examples (50%)"
    assert "exact: 1" in text and f"eval line 1 ~ {t}:2 [exact 1.00]" in text
