"""Selection by answers: with eval questions that list facts, every evaluation answers them, the
step with the best facts recall becomes final/ (ties to the earlier step), early stopping counts
evaluations without a better recall, and without facts nothing changes."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from onthejob.errors import ConfigError
from onthejob.train import config as cfg
from onthejob.train.loop import run
from onthejob.train.select import AnswerCheck
from tests.train.helpers import make_config


def eval_file(path, facts=True):
    with open(path, "w") as f:
        for i in range(3):
            record = {"messages": [{"role": "user", "content": f"what is {i} plus one"}, {"role": "assistant", "content": f"it is {i + 1}"}]}
            if facts:
                record["facts"] = [f"{i + 1}"]
            f.write(json.dumps(record) + "\n")
    return str(path)


def scripted(monkeypatch, recalls):
    """AnswerCheck answers with these recalls, one per evaluation, and records the steps' weights."""
    seen = iter(recalls)
    monkeypatch.setattr(AnswerCheck, "__call__", lambda self, model, tokenizer, bf16: next(seen))


def adapter(folder):
    return load_file(str(folder / "adapter_model.safetensors"))


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_final_holds_the_step_whose_answers_recall_the_most_facts(tmp_path, monkeypatch, capsys):
    scripted(monkeypatch, [0.2, 0.6, 0.6, 0.4])  # best at step 4; step 6 ties it and loses to the earlier one
    raw = make_config(tmp_path, **{"data.eval": eval_file(tmp_path / "eval.jsonl"), "max_steps": 8, "eval_every": 2,
                                   "save_every": 2, "keep_checkpoints": 10})
    run_dir = run(cfg.validate(raw))
    final, at_4, at_8 = adapter(run_dir / "final"), adapter(run_dir / "checkpoints" / "step-000004"), adapter(run_dir / "checkpoints" / "step-000008")
    assert all(torch.equal(final[k], at_4[k]) for k in final)
    assert not all(torch.equal(final[k], at_8[k]) for k in final)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["selected"] == {"by": "facts_recall", "step": 4, "facts_recall": 0.6, "last_step": 8, "last_facts_recall": 0.4, "questions": 3}
    assert [m["eval_facts_recall"] for m in metrics(run_dir) if "eval_facts_recall" in m] == [0.2, 0.6, 0.6, 0.4]
    assert "final/ is step 4: facts recall 0.600 on 3 eval questions (the last step, 8, had 0.400)" in capsys.readouterr().err
    assert not (run_dir / "best").exists()


def test_early_stopping_counts_evaluations_without_a_better_recall(tmp_path, monkeypatch, capsys):
    scripted(monkeypatch, [0.5, 0.5, 0.5, 0.9])  # eval loss may fall all along: recall decides
    raw = make_config(tmp_path, **{"data.eval": eval_file(tmp_path / "eval.jsonl"), "max_steps": 8, "eval_every": 2,
                                   "early_stopping_patience": 2})
    run_dir = run(cfg.validate(raw))
    assert "early stopping: no better facts recall (best 0.500) in 2 evaluations" in capsys.readouterr().err
    assert json.loads((run_dir / "run.json").read_text())["selected"]["step"] == 2
    assert max(m["step"] for m in metrics(run_dir)) == 6


def test_left_at_0_eval_every_becomes_once_an_epoch_and_the_answers_are_real(tmp_path, capsys):
    raw = make_config(tmp_path, **{"data.eval": eval_file(tmp_path / "eval.jsonl"), "epochs": 2, "precision": "bf16"})
    raw.pop("max_steps", None)
    run_dir = run(cfg.validate(raw))
    err = capsys.readouterr().err
    steps = int(re.search(r"derived\s+eval_every (\d+): once an epoch", err)[1])
    recalls = [m for m in metrics(run_dir) if "eval_facts_recall" in m]
    assert [m["step"] for m in recalls] == [steps, 2 * steps]  # the tiny model's answers, scored
    assert all(0 <= m["eval_facts_recall"] <= 1 for m in recalls)


def test_without_facts_or_with_select_last_final_is_the_last_step(tmp_path, capsys):
    raw = make_config(tmp_path, **{"data.eval": eval_file(tmp_path / "eval.jsonl", facts=False), "eval_every": 2})
    run_dir = run(cfg.validate(raw))
    assert "selected" not in json.loads((run_dir / "run.json").read_text())
    assert not [m for m in metrics(run_dir) if "eval_facts_recall" in m]
    with pytest.raises(ConfigError, match="no question of .* lists facts"):
        run(cfg.validate(make_config(tmp_path, **{"data.eval": eval_file(tmp_path / "eval.jsonl", facts=False),
                                                  "select.by": "facts", "output_dir": str(tmp_path / "run2")})))
    with pytest.raises(ConfigError, match=r"select\.by, data\.eval"):
        cfg.validate(make_config(tmp_path, **{"select.by": "facts"}))
