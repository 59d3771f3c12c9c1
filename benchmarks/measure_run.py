"""Train a config for a few steps and print what ``ojt plan`` estimates: run in its own process,
so the peak resident memory is the run's own.

    python benchmarks/measure_run.py CONFIG [--key value ...]      (benchmarks/plan_accuracy.py runs it)

Prints one JSON line: median trained tokens/s over the steps after the first, and peak RSS bytes.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from onthejob.train import config as cfg
from onthejob.train.loop import run

config = cfg.load(sys.argv[1], sys.argv[2:])
run_dir = run(config)
# VmHWM, not getrusage's ru_maxrss: Linux carries the parent's high-water mark across fork and
# exec into ru_maxrss, so a child of a big pytest process would report the parent's size.
status = Path("/proc/self/status").read_text()
peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024
steps = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
speeds = [s["tokens_per_s"] for s in steps if "tokens_per_s" in s][1:]
print(json.dumps({"tokens_per_s": statistics.median(speeds), "peak_bytes": peak}))
