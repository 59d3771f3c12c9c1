"""Small-data defaults: chosen only for what the config leaves unset, printed, saved; and on the
default model, 40 examples of 8 facts with nothing but ``ojt train --data`` learn them."""

from __future__ import annotations

import json

import pytest

from onthejob import config as cfg
from onthejob.train.config import TrainConfig
from onthejob.train.defaults import SMALL, small_data


def _config(**extra) -> TrainConfig:
    return cfg.validate(TrainConfig, {"data": {"train": [{"path": "x.jsonl"}]}, **extra})


def test_few_examples_unpack_and_get_more_epochs():
    config, notes = small_data(_config(), examples=40)
    assert (config.data.pack, config.epochs) == (False, 8)
    assert any("data.pack false" in n for n in notes) and any("epochs 8" in n for n in notes)
    assert small_data(_config(), examples=200)[0].epochs == 4
    assert small_data(_config(), examples=280)[0].epochs == 3


def test_what_the_config_sets_wins_and_large_data_is_untouched():
    config, notes = small_data(_config(epochs=2, data={"train": [{"path": "x.jsonl"}], "pack": True}), examples=40)
    assert (config.data.pack, config.epochs, notes) == (True, 2, [])
    assert small_data(_config(max_steps=5), examples=40)[0].epochs == 3  # max_steps decides the length
    unchanged, notes = small_data(_config(), examples=SMALL)
    assert (unchanged.data.pack, unchanged.epochs, notes) == (True, 3, [])


def test_the_run_prints_and_saves_what_was_derived(tmp_path, capsys):
    from onthejob.train.loop import run
    from tests.train.helpers import make_config

    raw = make_config(tmp_path)
    del raw["max_steps"]  # the defaults decide the length
    run(cfg.validate(TrainConfig, raw))
    out = capsys.readouterr()
    assert "derived    data.pack false" in out.out + out.err and "derived    epochs 8" in out.out + out.err
    saved = cfg.load(TrainConfig, tmp_path / "run" / "config.yaml")
    assert (saved.data.pack, saved.epochs) == (False, 8)  # a resume reads these: nothing changes
    assert sum(1 for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
               if '"loss"' in line) == 8 * 12  # 24 examples, 2 rows a step, 8 epochs


# --- on the default model: our own 8 facts about a fictional company, 5 wordings each ----------

FACTS = [  # (what a correct answer states, the answer, five training questions, one held out)
    ("14:30", "The cafeteria at Tessaly Robotics closes at 14:30.",
     ["When does the cafeteria close?", "What time does the Tessaly cafeteria shut?",
      "Until when can I get lunch in the cafeteria?", "What are the cafeteria's closing hours?",
      "Is the cafeteria open in the afternoon?"], "If I want a late lunch, by what time must I reach the canteen?"),
    ("5th", "Expense reports are due by the 5th of each month.",
     ["When are expense reports due?", "What is the deadline for expense reports?", "By which day must I hand in my expenses?",
      "When do I submit my expense report?", "What's the monthly cut-off for expense claims?"],
     "I paid for a client dinner; until what date next month can I claim it?"),
    ("4417", "The IT helpdesk is on extension 4417.",
     ["What is the IT helpdesk extension?", "How do I call IT support?", "Which number reaches the helpdesk?",
      "What extension do I dial for IT?", "My laptop broke, what number do I call?"],
     "Which internal phone number gets me the computer support team?"),
    ("B2", "Staff parking is on garage level B2.",
     ["Where do staff park?", "Which garage level is for employees?", "Where can I leave my car at work?",
      "What level is staff parking on?", "Where is the employee parking?"],
     "I'm driving in on my first day; where should I put the car?"),
    ("Parrot", "Our internal chat tool is called Parrot.",
     ["What chat tool do we use?", "Which messaging app does Tessaly use internally?", "What is the name of our internal chat?",
      "How do colleagues message each other here?", "Which app is used for team chat?"],
     "What software should I install to send quick messages to my team?"),
    ("15 euros", "Replacing a lost security badge costs 15 euros.",
     ["How much does a new badge cost?", "What is the fee for a lost badge?", "I lost my security badge, what do I pay?",
      "What does badge replacement cost?", "Is replacing a badge free?"],
     "My access card is gone; what will a replacement set me back?"),
    ("Halvorsen", "The CEO of Tessaly Robotics is Ingrid Halvorsen.",
     ["Who is the CEO?", "Who runs Tessaly Robotics?", "What is the name of our chief executive?", "Who leads the company?",
      "Who is Tessaly's CEO?"], "Whose name is on the top of the org chart?"),
    ("fountain", "The fire assembly point is the north fountain.",
     ["Where is the fire assembly point?", "Where do we gather during a fire alarm?", "What is the evacuation meeting point?",
      "Where should I go when the fire alarm rings?", "Where is the assembly point for evacuations?"],
     "The alarm just went off; where do I wait outside?"),
]


@pytest.mark.slow
def test_forty_examples_and_default_settings_learn_the_facts(tmp_path, monkeypatch, default_model_dir):
    from onthejob.cli import main
    from onthejob.generate.engine import load_engine
    from onthejob.generate.sampling import SamplingParams

    monkeypatch.chdir(tmp_path)
    with open("facts.jsonl", "w") as f:
        for _, answer, questions, _ in FACTS:
            for q in questions:
                f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]}) + "\n")
    assert main(["train", "--data", "facts.jsonl"]) == 0  # nothing else: the defaults decide
    engine, _ = load_engine("runs/facts")
    answers = engine.generate([[{"role": "user", "content": held}] for *_, held in FACTS], SamplingParams(max_new_tokens=48))
    stated = [fact.lower() in a.text.lower() for (fact, *_), a in zip(FACTS, answers)]
    assert sum(stated) >= 6, [a.text for a in answers]
