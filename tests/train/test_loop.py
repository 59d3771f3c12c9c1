"""Training behaviour on a tiny model built inside the test (seconds, not minutes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from onthejob.data.pack import collate, collate_padded, pack
from onthejob.data.readers import read_examples
from onthejob.data.template import tokenize_example
from onthejob.train import config as cfg
from onthejob.train.loop import FAULT_ENV, run
from onthejob.train.loss import TrainForward
from tests.train.helpers import make_config, write_config

REPO = Path(__file__).resolve().parents[2]


def _train(tmp_path, **overrides) -> Path:
    return run(cfg.validate(make_config(tmp_path, **overrides)))


def _adapter(run_dir: Path, sub: str = "final") -> dict[str, torch.Tensor]:
    return load_file(run_dir / sub / "adapter_model.safetensors")


def test_trainable_parameters_change_and_frozen_ones_do_not(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir = _train(tmp_path, freeze_layers=1, max_steps=3)
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = PeftModel.from_pretrained(base, run_dir / "final")
    lora = {n: p for n, p in tuned.named_parameters() if "lora_B" in n}
    assert lora and all("layers.0." not in n for n in lora), "frozen layer 0 must get no adapter"
    assert all(p.abs().sum() > 0 for p in lora.values()), "LoRA B starts at zero; training must move it"
    merged = tuned.merge_and_unload().state_dict()
    for name, value in merged.items():
        changed = not torch.equal(value, before[name])
        assert changed == (".layers.1." in name and name.endswith("proj.weight")), name


def test_full_fine_tuning_with_frozen_layers(tmp_path):
    from transformers import AutoModelForCausalLM

    run_dir = _train(tmp_path, method="full", freeze_layers=1, max_steps=2)
    before = AutoModelForCausalLM.from_pretrained(tmp_path / "model").state_dict()
    after = AutoModelForCausalLM.from_pretrained(run_dir / "final").state_dict()
    for name in before:
        changed = not torch.equal(before[name], after[name])
        frozen = "layers.0." in name or "embed_tokens" in name or "lm_head" in name
        assert changed != frozen, name


def test_loss_falls_when_overfitting_a_tiny_set(tmp_path):
    from tests.train.helpers import make_data

    small = make_data(tmp_path / "four.jsonl", n=4)
    run_dir = _train(tmp_path, method="full", max_steps=30, **{"optim.lr": 3e-3, "data.train": [{"path": str(small)}]})
    losses = [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 30
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3
    assert (run_dir / "loss.png").stat().st_size > 1000


def test_packed_and_unpacked_batches_give_the_same_loss(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = make_config(tmp_path)
    tok = AutoTokenizer.from_pretrained(config["model"])
    model = AutoModelForCausalLM.from_pretrained(config["model"])
    seqs = [tokenize_example(e, tok) for e in read_examples(config["data"]["train"][0]["path"]).examples[:6]]
    forward = TrainForward(model).eval()
    with torch.no_grad():
        packed = forward(**collate(pack(seqs, 256), tok.pad_token_id))
        padded = forward(**collate_padded(seqs, tok.pad_token_id))
    assert packed[2] == padded[2] > 0  # the same supervised tokens
    assert packed[0].item() == pytest.approx(padded[0].item(), rel=1e-5)


def test_accumulated_micro_steps_equal_one_larger_batch(tmp_path):
    one = _train(tmp_path / "a", micro_batch_size=4, grad_accum=1, max_steps=3)
    two = _train(tmp_path / "b", micro_batch_size=2, grad_accum=2, max_steps=3)
    a, b = _adapter(one), _adapter(two)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=5e-5)  # Adam amplifies float noise; a wrong normalisation is off by ~lr


def _cli(args: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "onthejob", *args], env=env, capture_output=True, text=True, timeout=300)


def test_sigkill_then_resume_ends_with_the_same_weights(tmp_path):
    config = make_config(tmp_path, max_steps=6, save_every=2, **{"data.eval_split": 0.2})
    whole = write_config(tmp_path / "whole.yaml", {**config, "output_dir": str(tmp_path / "whole")})
    killed = write_config(tmp_path / "killed.yaml", {**config, "output_dir": str(tmp_path / "killed")})
    assert _cli(["train", str(whole)]).returncode == 0
    crash = _cli(["train", str(killed)], {FAULT_ENV: "3"})
    assert crash.returncode == -9, crash.stderr
    assert not (tmp_path / "killed" / "final").exists()
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()) == ["step-000002"]
    resumed = _cli(["train", "--resume", str(tmp_path / "killed")])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step 2" in resumed.stderr
    a, b = _adapter(tmp_path / "whole"), _adapter(tmp_path / "killed")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-7)
    steps = [json.loads(line).get("step") for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(line).get("step") for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]


def test_resume_warns_naming_the_winner(tmp_path):
    run_dir = _train(tmp_path, max_steps=2, save_every=1)
    result = _cli(["train", "--resume", str(run_dir), "--max_steps", "3", "--lora.r", "4"])
    assert result.returncode == 0, result.stderr
    assert "max_steps changes from 2 (checkpoint) to 3; the new value wins" in result.stderr
    assert "lora.r is 4 on the command line but 16 in the checkpoint; the checkpoint wins" in result.stderr


def test_final_adapter_loads_in_plain_peft_without_onthejob(tmp_path):
    run_dir = _train(tmp_path, max_steps=2)
    code = (
        "import sys, torch; from peft import PeftModel; from transformers import AutoModelForCausalLM, AutoTokenizer;"
        f"m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(tmp_path / 'model')!r}), {str(run_dir / 'final')!r});"
        f"t = AutoTokenizer.from_pretrained({str(run_dir / 'final')!r}); assert t.chat_template;"
        "assert 'onthejob' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert out.stdout.strip() == "ok", out.stderr


def test_bad_data_is_refused_before_training(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [\n')
    result = _cli(["train", "--data", str(bad), "--model", str(make_config(tmp_path)["model"])])
    assert result.returncode == 7  # DataError: its own code, not argparse's 2
    assert "bad.jsonl has 2 error(s), nothing was trained" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_errors_read_as_documented(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train:\n    - path: x.jsonl\noptim:\n  learning_rate: 1\n")
    result = _cli(["train", str(path), "--lora.rank", "8"])
    assert result.returncode == 3
    assert result.stderr.splitlines()[0] == f"error: {path}: 2 problem(s)"
    assert "  optim.learning_rate: unknown key" in result.stderr
    assert "  lora.rank: unknown key" in result.stderr


@pytest.mark.parametrize("method,extra", [("ia3", {}), ("lora", {"lora.dora": True, "lora.rslora": True})])
def test_other_adapters_train_and_save_in_peft_format(tmp_path, method, extra):
    run_dir = _train(tmp_path, method=method, max_steps=2, **extra)
    from safetensors.torch import load_file

    adapter_config = json.loads((run_dir / "final" / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == method.upper()
    weights = load_file(run_dir / "final" / "adapter_model.safetensors")
    if method == "ia3":  # IA3 starts every scaling vector at ones: training moved them
        scales = [w for k, w in weights.items() if "ia3_l" in k]
        assert scales and all((w != 1).any() for w in scales)
    else:  # LoRA starts B at zero; DoRA adds a magnitude vector per layer
        assert adapter_config["use_dora"] and adapter_config["use_rslora"]
        b = [w for k, w in weights.items() if "lora_B" in k]
        assert b and all(w.abs().sum() > 0 for w in b)
        assert any("lora_magnitude_vector" in k for k in weights)


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    import signal
    import time

    config = write_config(tmp_path / "c.yaml", make_config(tmp_path, max_steps=100000))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "onthejob", "train", str(config)], env=env, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    saved = list((tmp_path / "run" / "checkpoints").iterdir())
    assert len(saved) == 1
    step = int(saved[0].name.split("-")[1])
    assert step >= 3 and f"stopped at step {step}/100000; continue with: ojt train --resume" in err
    assert not (tmp_path / "run" / "final").exists()


def test_chat_uses_the_system_prompt_the_run_was_trained_with(tmp_path):
    import io

    from onthejob.generate.chat import run_chat
    from onthejob.generate.sampling import SamplingParams

    run_dir = _train(tmp_path, max_steps=1)
    assert json.loads((run_dir / "run.json").read_text())["system_prompt"] == "You answer briefly."
    out = io.StringIO()
    run_chat(str(run_dir), params=SamplingParams(max_new_tokens=2), input=io.StringIO("hi\n/exit\n"), output=out)
    assert "system prompt from training: You answer briefly." in out.getvalue()
    out = io.StringIO()
    run_chat(str(run_dir), system="Other.", params=SamplingParams(max_new_tokens=2), input=io.StringIO("/exit\n"), output=out)
    assert "system prompt from training" not in out.getvalue()
