"""Two CPU processes (gloo) train like one process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.helpers import make_config, write_config

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_two_processes_match_one_process_at_the_same_global_batch(tmp_path):
    config = make_config(tmp_path, max_steps=5, **{"data.eval_split": 0.2})
    one = write_config(tmp_path / "one.yaml", {**config, "output_dir": str(tmp_path / "one"), "grad_accum": 2})
    two = write_config(tmp_path / "two.yaml", {**config, "output_dir": str(tmp_path / "two"), "grad_accum": 1})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "onthejob", "train", str(one)], env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m", "onthejob", "train", str(two)]
    double = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    if double.returncode != 0 and "gloo" in double.stderr.lower() and "not available" in double.stderr.lower():
        pytest.skip("this torch build has no gloo backend")
    assert double.returncode == 0, double.stderr[-3000:]
    assert "2 process(es)" in double.stderr
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 5
    assert b == pytest.approx(a, rel=1e-4)
    ev = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines() if "eval_loss" in line]
    ev1 = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines() if "eval_loss" in line]
    assert ev[-1]["eval_loss"] == pytest.approx(ev1[-1]["eval_loss"], rel=1e-4)
    assert (tmp_path / "two" / "final" / "adapter_model.safetensors").is_file()
