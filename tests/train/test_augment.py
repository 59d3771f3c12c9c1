"""data.augment: a run rewords its training questions with its own base model, trains on them too,
keeps them in RUN/augment.jsonl and reads them back on resume; eval data is never reworded."""

import json
import re

from onthejob.data.readers import read_examples
from onthejob.data.split import split_examples
from onthejob.synth.augment import RunAugment
from onthejob.train import config as cfg
from onthejob.train.loop import run
from tests.runs import save_base
from tests.train.helpers import make_config


def test_a_run_trains_on_the_paraphrases_of_its_training_examples_only(tmp_path, capsys):
    save_base(tmp_path / "model")  # weights with spread: the default tiny model replies with newlines only
    settings = {"paraphrases": 2, "teacher": {"max_new_tokens": 8}, "cache": str(tmp_path / "cache.sqlite3")}
    config = cfg.validate(make_config(tmp_path, **{"data.augment": settings, "data.eval_split": 0.25}))
    run_dir = run(config)
    err = capsys.readouterr().err
    saved = [json.loads(line) for line in (run_dir / "augment.jsonl").read_text().splitlines()]
    data = str(tmp_path / "data.jsonl")
    train, held = split_examples(read_examples(data).examples, eval_fraction=0.25, seed=0)
    # the tiny random model's rewordings are gibberish, but some pass the checks (the question
    # has no fact to lose) and each names a training original; none rewords an eval question
    assert saved and {r["paraphrase_of"] for r in saved} <= {e.where for e in train}
    assert not {r["paraphrase_of"] for r in saved} & {e.where for e in held}
    assert all(r["paraphrase"] in (1, 2) and r["messages"][0]["content"] == "You answer briefly." for r in saved)
    n_train = int(re.search(r"examples\s+(\d+) for training", err)[1])
    assert n_train == len(train) + len(saved) and f"augment: {len(saved)} paraphrases mixed in" in err
    # resuming reads them back: no teacher is built (there is no base model to build it on)
    again = RunAugment(config.data.augment, config.model, None, None, run_dir=run_dir, say=lambda *_: None)(train)
    assert again == saved
