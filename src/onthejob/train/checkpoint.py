"""Checkpoints: everything needed to continue a run exactly, written atomically.

    RUN/checkpoints/step-000040/
        adapter_config.json, adapter_model.safetensors   (PEFT methods)  | model.safetensors, config.json (full)
        tokenizer files, chat template                    so the folder stands on its own
        optimizer.pt, scheduler.pt, rng.pt, state.json    to resume: step, epoch position, metrics

Each folder is built under a temporary name and renamed, so a crash (even SIGKILL) leaves either
the previous checkpoints or a complete new one; ``latest`` only ever sees complete folders.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onthejob.errors import RunError
from onthejob.fsutil import atomic_dir

STATE = "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def step_dir(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:06d}"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model_files(model, tokenizer, folder: Path, state_dict: dict | None = None) -> None:
    """The model (or only its adapter, for PEFT) and the tokenizer with its chat template."""
    model.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def save(run: Path, *, step: int, model, tokenizer, optimizer, scheduler, state: dict, keep: int, state_dict=None) -> Path:
    dest = step_dir(run, step)
    with atomic_dir(dest) as tmp:
        save_model_files(model, tokenizer, tmp, state_dict)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        (tmp / STATE).write_text(json.dumps({**state, "step": step}, indent=2))
    prune(run, keep)
    return dest


def complete_checkpoints(run: Path) -> list[Path]:
    folder = run / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _STEP_DIR.match(p.name) and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest(run: Path) -> Path | None:
    found = complete_checkpoints(run)
    return found[-1] if found else None


def prune(run: Path, keep: int) -> None:
    for old in complete_checkpoints(run)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_trainable(model, folder: Path) -> None:
    """Put the checkpoint's trained weights back into ``model`` (adapter or full weights); a
    checkpoint that does not fit the model is a ``RunError``."""
    from safetensors.torch import load_file

    if (folder / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        try:
            result = set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
        except RuntimeError as e:  # tensors of other shapes: another rank or base model
            raise _misfit(folder, _summary(e)) from e
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise _misfit(folder, f"{len(unexpected)} weights with no place in it, e.g. {unexpected[0]}")
        return
    state = {}
    for f in sorted(folder.glob("*.safetensors")):
        state.update(load_file(f))
    try:
        _, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise _misfit(folder, _summary(e)) from e
    if unexpected:
        raise _misfit(folder, f"{len(unexpected)} weights with no place in it, e.g. {unexpected[0]}")


def _misfit(folder: Path, detail: str) -> RunError:
    return RunError(
        f"checkpoint {folder} does not fit the model being trained: {detail}",
        fix="it was saved by a run with another base model or method/adapter settings (model, method, lora.r, "
        "lora.target_modules); resume with the run's own config.yaml, or train into a new output_dir",
    )


def _summary(error: Exception) -> str:
    """torch's load error lists every mismatched tensor under a header; the first one says enough."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    details = lines[1:] or lines
    return details[0] + (f" (and {len(details) - 1} more)" if len(details) > 1 else "")


def load_state(folder: Path, optimizer, scheduler) -> dict:
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(folder / "rng.pt", weights_only=False))
    return json.loads((folder / STATE).read_text())
