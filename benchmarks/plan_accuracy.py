"""How close ``ojt plan``'s estimates for this machine come to real runs: tokens/s and peak memory.

    python benchmarks/plan_accuracy.py                  # the shipped config and a checkpointed variant

For each config it prints the estimate, then trains 6 steps in a child process of its own
(benchmarks/measure_run.py: median tokens/s after the first step, peak resident memory from
VmHWM) and prints estimate / measured. ``ojt plan`` aims for 0.7-1.3 on a quiet machine; a busy
one (another torch process on the same cores) measures slower and reads high. Not a test: the
ratios depend on the machine. (Until 2026-12 this was a slow test in tests/train/test_plan.py.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from onthejob.train import config as cfg
from onthejob.train.plan import plan_report

REPO = Path(__file__).resolve().parents[1]
HR_CONFIG = REPO / "configs" / "hr-demo.yaml"
MEASURE = Path(__file__).with_name("measure_run.py")
# Two configs that differ where the cost model must follow: rows of 512 vs 256, 2 rows per
# micro-step vs 1, gradient checkpointing off vs on, LoRA rank 16 vs 8.
CONFIGS = {
    "hr-demo": [],
    "checkpointed": ["--micro_batch_size", "1", "--grad_accum", "3", "--gradient_checkpointing", "true", "--lora.r", "8",
                     "--data.max_seq_len", "256"],
}


def measure(overrides: list[str], steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = ["--max_steps", str(steps), "--eval_every", "0", "--save_every", "0", "--output_dir", str(Path(tmp) / "run")]
        result = subprocess.run([sys.executable, str(MEASURE), str(HR_CONFIG), *overrides, *run],
                                capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="training steps measured per config (default: 6)")
    args = parser.parse_args()
    print(f"{'config':<14} {'est tok/s':>10} {'run tok/s':>10} {'ratio':>6}   {'est GiB':>8} {'run GiB':>8} {'ratio':>6}")
    for name, overrides in CONFIGS.items():
        here = plan_report(cfg.load(HR_CONFIG, overrides), ["H100"])[0][0]  # this machine first
        run = measure(overrides, args.steps)
        gib = 2**30
        print(f"{name:<14} {here.tokens_per_s:>10.0f} {run['tokens_per_s']:>10.0f} {here.tokens_per_s / run['tokens_per_s']:>5.2f}x"
              f"   {here.peak_bytes / gib:>8.2f} {run['peak_bytes'] / gib:>8.2f} {here.peak_bytes / run['peak_bytes']:>5.2f}x")


if __name__ == "__main__":
    main()
