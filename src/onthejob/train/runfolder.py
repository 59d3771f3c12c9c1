"""The run folder: what was asked (config.yaml), what it ran on (run.json: base model, method,
data fingerprint, library versions), what happened (metrics.jsonl, loss.png), and the results
(checkpoints/, final/)."""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from onthejob import fsutil
from onthejob.errors import RunError

LIBRARIES = ("onthejob", "torch", "transformers", "peft", "accelerate", "tokenizers")


def versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def write_start(run: Path, config_yaml: str, info: dict[str, Any]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    fsutil.write_text(run / "config.yaml", config_yaml)
    fsutil.write_json(run / "run.json", {**info, "versions": versions(), "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S")})


def update_info(run: Path, **fields: Any) -> None:
    fsutil.write_json(run / "run.json", {**read_info(run), **fields})


def read_info(run: Path) -> dict[str, Any]:
    path = run / "run.json"
    if not path.is_file():
        raise RunError(f"{run} is not a run folder (no run.json)", fix="name the output_dir of an `ojt train` run")
    return json.loads(path.read_text())


class Metrics:
    """metrics.jsonl, one JSON object per line, appended and flushed as training goes."""

    def __init__(self, run: Path, *, resume_step: int | None = None, enabled: bool = True):
        self.path = run / "metrics.jsonl"
        self.enabled = enabled
        if enabled and resume_step is not None:
            # Lines after the checkpoint describe steps that will be trained again.
            kept = [r for r in self.read() if r.get("step", 0) <= resume_step]
            fsutil.write_jsonl(self.path, kept)
        elif enabled:
            fsutil.write_text(self.path, "")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass  # a line cut short by a crash
        return rows

    def log(self, **row: Any) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def plot(self, path: Path) -> None:
        if not self.enabled:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.read()
        train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        if train:
            ax.plot(*zip(*train), label="train loss", lw=1.2)
        if evals:
            ax.plot(*zip(*evals), "o-", label="eval loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (per supervised token)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with fsutil.atomic_file(path, "wb", encoding=None) as f:
            fig.savefig(f, format="png")
        plt.close(fig)
