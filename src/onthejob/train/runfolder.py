"""The run folder: what was asked (config.yaml), what it ran on (run.json: base model, method,
data fingerprint, library versions), what happened (metrics.jsonl, loss.png), and the results
(checkpoints/, final/).

A fresh run never mixes with another run's files: it starts in an empty folder, or with
``--overwrite`` in an old run folder that is moved aside in one rename and then removed. Leftovers
of a run killed mid-write (``.final.*.tmp``, ``.step-*.tmp``) are removed at the next start.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import uuid
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


def is_run_folder(run: Path) -> bool:
    """A folder ``ojt train`` made: its run.json has a status and the library versions."""
    try:
        info = json.loads((run / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "status" in info and "versions" in info


def check_fresh(run: Path, *, overwrite: bool) -> None:
    """A fresh run's output_dir must be missing, empty, or (with ``overwrite``) an old run folder."""
    if run.exists() and not run.is_dir():
        raise RunError(f"output_dir {run} is a file, not a folder", fix="choose another output_dir")
    if not run.is_dir() or not any(run.iterdir()):
        return
    if not overwrite:
        what = "another run" if is_run_folder(run) else "files"
        raise RunError(f"output_dir {run} already holds {what}; a new run would mix with them",
                       fix=f"continue it with `ojt train --resume {run}`, choose another --output_dir, or add --overwrite to replace it")
    if not is_run_folder(run):
        raise RunError(f"output_dir {run} holds files that are not an onthejob run, so --overwrite will not clear it",
                       fix="choose another --output_dir")


def start_fresh(run: Path) -> str:
    """Empty ``run`` (an old run folder is moved aside in one rename, then removed), check that it
    can be written, and return the new run's id."""
    if run.is_dir() and any(run.iterdir()):
        trash = run.with_name(f".{run.name}.overwritten.tmp")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(run, trash)
        shutil.rmtree(trash, ignore_errors=True)
    check_writable(run)
    return uuid.uuid4().hex


def check_writable(run: Path) -> None:
    """Write and remove a small file in ``run`` now, before a model loads, so a read-only or full
    disk is one line naming the folder rather than a failure after minutes of work."""
    try:
        run.mkdir(parents=True, exist_ok=True)
        probe = run / ".write-test.tmp"
        fsutil.write_text(probe, "onthejob checks that this folder can be written\n" * 8)
        probe.unlink()
    except OSError as e:
        raise RunError(f"cannot write to output_dir {run}: {e.strerror or e}",
                       fix="choose an output_dir on a writable disk with free space") from None


def clean_debris(run: Path) -> int:
    """Remove what a run killed mid-write left (temporary ``.*.tmp`` and ``.*.old`` files and
    folders in the run folder and in checkpoints/); returns the bytes freed."""
    freed = 0
    for folder in (run, run / "checkpoints", run.parent):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if not _is_debris(entry, run, folder):
                continue
            freed += _size(entry)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    return freed


def _is_debris(entry: Path, run: Path, folder: Path) -> bool:
    name = entry.name
    if folder == run.parent:  # only what --overwrite of this run folder moved aside
        return name == f".{run.name}.overwritten.tmp"
    return name.startswith(".") and (name.endswith(".tmp") or name.endswith(".old"))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def write_start(run: Path, config_yaml: str, info: dict[str, Any]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    fsutil.write_text(run / "config.yaml", config_yaml)
    fsutil.write_json(run / "run.json", {**info, "versions": versions(), "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S")})


def update_info(run: Path, **fields: Any) -> None:
    fsutil.write_json(run / "run.json", {**read_info(run), **fields})


def mark_failed(run: Path, error: BaseException) -> None:
    """run.json says the run failed and why. On a full disk the atomic write has no room for its
    temporary copy; rewriting the small file in place frees its blocks first, so it still fits."""
    try:
        update_info(run, status="failed", error=str(error))
    except OSError:
        with contextlib.suppress(OSError, RunError):
            text = json.dumps({**read_info(run), "status": "failed", "error": str(error)}, indent=2, ensure_ascii=False)
            (run / "run.json").write_text(text + "\n")
    except RunError:
        pass  # no run.json yet: the run failed before it started


def read_info(run: Path) -> dict[str, Any]:
    path = run / "run.json"
    if not path.is_file():
        raise RunError(f"{run} is not a run folder (no run.json)", fix="name the output_dir of an `ojt train` run")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{path} is damaged ({type(e).__name__})", fix="restore it from a copy, or train again with --overwrite") from None
    if not isinstance(info, dict):
        raise RunError(f"{path} is damaged (not a JSON object)", fix="restore it from a copy, or train again with --overwrite")
    return info


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
        """Append one row; a value that is not finite (a skipped step's loss) is written as null,
        so every line stays JSON."""
        if self.enabled:
            row = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, allow_nan=False) + "\n")

    def plot(self, path: Path) -> None:
        if not self.enabled:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.read()
        train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
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
