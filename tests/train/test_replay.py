"""Replay: the base model's own answers to general prompts, mixed into training and kept in the run."""

import json
from types import SimpleNamespace

import pytest

from onthejob.errors import ConfigError, DataError
from onthejob.train import config as cfg, replay
from onthejob.train.config import ReplayConfig
from onthejob.train.loop import run
from tests.runs import lively_model
from tests.tiny import tiny_tokenizer
from tests.train.helpers import make_config


def prompts_file(path, n=5):
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"name a colour number {i}"}]}) + "\n"
                            for i in range(n)))
    return path


def test_the_base_answers_are_kept_only_when_they_stopped():
    from onthejob.generate.engine import Engine
    from onthejob.generate.sampling import SamplingParams

    tokenizer = tiny_tokenizer()
    model = lively_model(tokenizer, seed=3)
    settings = ReplayConfig(n=len(replay.read_prompts(replay.PROMPTS)), max_new_tokens=6)
    examples = replay.replay_examples(settings, model, tokenizer, system="Be brief.", seed=0, say=lambda *_: None)
    chosen = __import__("random").Random(0).sample(replay.read_prompts(replay.PROMPTS), settings.n)
    asked = [[{"role": "system", "content": "Be brief."}, *p] for p in chosen]
    done = Engine(model, tokenizer).generate(asked, SamplingParams(max_new_tokens=6, seed=0), batch_size=16)
    expected = [a + [{"role": "assistant", "content": d.text.strip()}] for a, d in zip(asked, done)
                if d.finish_reason == "stop" and d.text.strip()]
    assert [e.messages for e in examples] == expected
    assert len(expected) < settings.n  # some answers ran to max_new_tokens and were left out


def test_a_run_mixes_them_in_saves_them_and_resume_reads_them_back(tmp_path, monkeypatch):
    calls = []

    def fake_answers(model, tokenizer, conversations, max_new_tokens):
        calls.append(conversations)
        return [SimpleNamespace(text=f"colour {i}", finish_reason="stop" if i != 1 else "length")
                for i in range(len(conversations))]

    monkeypatch.setattr(replay, "_answers", fake_answers)
    config = make_config(tmp_path, **{"data.replay": {"n": 3, "prompts": str(prompts_file(tmp_path / "p.jsonl"))}})
    run_dir = run(cfg.validate(config))
    saved = [json.loads(line) for line in (run_dir / "replay.jsonl").read_text().splitlines()]
    assert len(calls) == 1 and len(saved) == 2  # the answer cut at max_new_tokens is left out
    # the data's one system prompt is given to the base and kept in the examples, so the run's
    # system prompt is still known
    assert all(r["messages"][0] == {"role": "system", "content": "You answer briefly."} for r in saved)
    assert json.loads((run_dir / "run.json").read_text())["system_prompt"] == "You answer briefly."
    again = replay.replay_examples(ReplayConfig(n=3), None, None, system=None, seed=0, run_dir=run_dir)
    assert [e.messages for e in again] == [r["messages"] for r in saved] and len(calls) == 1  # read, not generated


def test_bad_replay_settings_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="data.replay.n is 9 but .* holds 5 prompts"):
        replay.replay_examples(ReplayConfig(n=9, prompts=str(prompts_file(tmp_path / "p.jsonl"))), None, None,
                               system=None, seed=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "a"}]}) + "\n" + json.dumps({"prompt": "b"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: a replay prompt is"):
        replay.read_prompts(bad)
    with pytest.raises(ConfigError, match="data.replay.n"):
        cfg.validate(make_config(tmp_path, **{"data.replay": {"n": 0}}))
