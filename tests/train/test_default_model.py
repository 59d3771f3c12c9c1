"""A few end-to-end checks on the real default model (marked slow: about a minute)."""

from pathlib import Path

import pytest

from onthejob.train import config as cfg
from onthejob.train.loop import run

REPO = Path(__file__).resolve().parents[2]
HR = REPO / "examples" / "hr"


@pytest.mark.slow
def test_tuned_default_model_stops_by_itself_on_held_out_questions(default_model_dir, tmp_path):
    from onthejob.eval.data import read_eval
    from onthejob.models.adapters import load_for_inference
    from onthejob.generate.engine import Engine
    from onthejob.generate.sampling import SamplingParams

    subset = tmp_path / "train.jsonl"
    subset.write_text("".join((HR / "train.jsonl").read_text().splitlines(keepends=True)[:80]))
    config = cfg.validate(
        {
            "data": {"train": [{"path": str(subset)}], "max_seq_len": 512},
            "output_dir": str(tmp_path / "run"),
            "epochs": 2,
            "micro_batch_size": 2,
            "optim": {"lr": 2e-3},
        }
    )
    run_dir = run(config)
    loaded = load_for_inference(run_dir)
    questions = read_eval(HR / "eval.jsonl")[:12]
    done = Engine(loaded.model, loaded.tokenizer).generate([q.messages for q in questions], SamplingParams(max_new_tokens=80), batch_size=12)
    reasons = [c.finish_reason for c in done]
    assert reasons == ["stop"] * len(questions), [c.text for c in done]
