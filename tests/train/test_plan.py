"""``ojt plan``: the model arithmetic, GPU names, the command, and the estimate against a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from onthejob.errors import ConfigError
from onthejob.train import config as cfg
from onthejob.train.plan import GPUS, Shape, gpu_name, plan_report

REPO = Path(__file__).resolve().parents[2]
HR_CONFIG = REPO / "configs" / "hr-demo.yaml"
MEASURE = Path(__file__).with_name("measure_run.py")


def test_gpu_names_match_loosely_and_unknown_ones_are_refused():
    assert gpu_name("h100") == "H100"
    assert gpu_name("4090") == "RTX 4090"
    assert gpu_name("a100-80gb") == "A100 80GB"
    assert gpu_name("A100") == "A100"
    with pytest.raises(ConfigError, match="unknown GPU"):
        gpu_name("voodoo2")
    assert all(tflops > 0 and memory > 0 for tflops, memory, _ in GPUS.values())


@pytest.mark.slow
def test_parameter_count_from_the_config_matches_the_model(default_model_dir):
    from transformers import AutoConfig

    from onthejob.models.load import load_model

    model, _ = load_model(str(default_model_dir))
    shape = Shape.of(AutoConfig.from_pretrained(default_model_dir))
    assert shape.params == sum(p.numel() for p in model.parameters())


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onthejob", *args], capture_output=True, text=True, cwd=REPO, check=False)


def test_unknown_gpu_is_one_line_and_exit_3():
    result = _cli(["plan", str(HR_CONFIG), "--gpu", "voodoo2"])
    assert result.returncode == 3
    assert result.stderr.splitlines()[0].startswith("error: --gpu voodoo2: unknown GPU")
    assert "Traceback" not in result.stderr


# Two configs that differ where the cost model must follow: rows of 512 vs 256, 2 rows per
# micro-step vs 1, gradient checkpointing off vs on, LoRA rank 16 vs 8.
CONFIGS = {
    "hr-demo": [],
    "checkpointed": ["--micro_batch_size", "1", "--grad_accum", "3", "--gradient_checkpointing", "true", "--lora.r", "8", "--data.max_seq_len", "256"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_estimate_lands_within_30_percent_of_a_measured_run(name, default_model_dir, tmp_path):
    overrides = CONFIGS[name]
    config = cfg.load(HR_CONFIG, overrides)
    estimates, text = plan_report(config, ["H100"])
    here, h100 = estimates
    assert "this machine" in text and "H100" in text
    assert h100.tokens_per_s > 10 * here.tokens_per_s  # a GPU estimate, not this machine's

    run = ["--max_steps", "6", "--eval_every", "0", "--save_every", "0", "--output_dir", str(tmp_path / "run")]
    result = subprocess.run([sys.executable, str(MEASURE), str(HR_CONFIG), *overrides, *run], capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    speed = here.tokens_per_s / measured["tokens_per_s"]
    memory = here.peak_bytes / measured["peak_bytes"]
    assert 0.7 <= speed <= 1.3, f"{name}: estimated {here.tokens_per_s:.0f} tokens/s, measured {measured['tokens_per_s']:.0f}"
    assert 0.7 <= memory <= 1.3, f"{name}: estimated {here.peak_bytes / 2**30:.2f} GiB, measured {measured['peak_bytes'] / 2**30:.2f}"
