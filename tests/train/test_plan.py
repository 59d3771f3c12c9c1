"""``ojt plan``: the model arithmetic, GPU names, the command and the report (its accuracy against\nreal runs: benchmarks/plan_accuracy.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from onthejob.errors import ConfigError
from onthejob.train import config as cfg
from onthejob.train.plan import GPUS, Shape, gpu_name, plan_report

REPO = Path(__file__).resolve().parents[2]
HR_CONFIG = REPO / "configs" / "hr-demo.yaml"


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


@pytest.mark.slow
def test_report_has_this_machine_and_named_gpus(default_model_dir):
    """How close the estimates come to real runs is measured in benchmarks/plan_accuracy.py
    (tests assert behaviour, never speed); here: what the report holds."""
    config = cfg.load(HR_CONFIG, ["--micro_batch_size", "1", "--lora.r", "8"])
    estimates, text = plan_report(config, ["H100", "T4"])
    here, h100, t4 = estimates
    assert "this machine" in text and "H100" in text and "T4" in text
    assert all(e.tokens_per_s > 0 and e.peak_bytes > 0 for e in estimates)
    assert h100.tokens_per_s > t4.tokens_per_s  # the faster card is estimated faster
    assert here.peak_bytes == pytest.approx(h100.peak_bytes, rel=0.5)  # the same job's memory, give or take CUDA's own
