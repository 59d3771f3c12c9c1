"""Checkpoints: everything needed to continue a run exactly, written atomically.

    RUN/checkpoints/step-000040/
        adapter_config.json, adapter_model.safetensors   (PEFT methods)  | model.safetensors, config.json (full)
        tokenizer files, chat template                    so the folder stands on its own
        optimizer.safetensors, scheduler.json, rng.json   to resume, with no pickle anywhere
        state.json                                        step, epoch position, run id, metrics

Each folder is built under a temporary name and renamed, so a crash (even SIGKILL) leaves either
the previous checkpoints or a complete new one. Nothing is loaded with pickle: run folders are
shared between people, and a pickle runs whatever code it names. ``problem`` checks a folder
before anything is loaded from it, so a damaged newest checkpoint falls back to the one before.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onthejob.errors import RunError
from onthejob.fsutil import atomic_dir

STATE = "state.json"
OPTIMIZER, SCHEDULER, RNG = "optimizer.safetensors", "scheduler.json", "rng.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
_META = "onthejob"  # the optimizer file's metadata key: param groups and non-tensor state, as JSON
FAULT_WRITE_ENV = "ONTHEJOB_FAULT_IN_WRITE"  # tests: SIGKILL self half-way through writing "checkpoint" or "final"


def fault_point(what: str) -> None:
    if os.environ.get(FAULT_WRITE_ENV) == what:
        os.kill(os.getpid(), signal.SIGKILL)


def step_dir(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step:06d}"


# --- resume state as safetensors and JSON ---------------------------------------------------


def save_optimizer(optimizer, path: Path) -> None:
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    meta = json.dumps({"param_groups": sd["param_groups"], "scalars": scalars})
    save_file(tensors, str(path), metadata={_META: meta})


def load_optimizer(optimizer, path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()[_META])
        state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["scalars"].items()}
        for key in f.keys():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = f.get_tensor(key)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


# --- writing --------------------------------------------------------------------------------


def save_model_files(model, tokenizer, folder: Path, state_dict: dict | None = None) -> None:
    """The model (or only its adapter, for PEFT) and the tokenizer with its chat template."""
    model.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def save(run: Path, *, step: int, model, tokenizer, optimizer, scheduler, state: dict, keep: int,
         run_id: str | None = None, state_dict=None) -> Path:
    dest = step_dir(run, step)
    with atomic_dir(dest) as tmp:
        save_model_files(model, tokenizer, tmp, state_dict)
        fault_point("checkpoint")
        save_optimizer(optimizer, tmp / OPTIMIZER)
        (tmp / SCHEDULER).write_text(json.dumps(scheduler.state_dict()))
        (tmp / RNG).write_text(json.dumps(rng_state()))
        (tmp / STATE).write_text(json.dumps({**state, "step": step, "run_id": run_id}, indent=2))
    prune(run, keep, run_id)
    return dest


# --- finding and checking -------------------------------------------------------------------


def _run_id_of(folder: Path) -> str | None:
    try:
        return json.loads((folder / STATE).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def complete_checkpoints(run: Path, run_id: str | None = None) -> list[Path]:
    """The run's checkpoint folders, oldest first: those with a state.json (written last) and, when
    ``run_id`` is given, that run's id, so a folder copied in from another run is never touched."""
    folder = run / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _STEP_DIR.match(p.name) and (p / STATE).is_file()]
    if run_id is not None:
        found = [p for p in found if _run_id_of(p) in (run_id, None)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def prune(run: Path, keep: int, run_id: str | None = None) -> None:
    for old in complete_checkpoints(run, run_id)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be resumed from, or None: every file present, whole and readable."""
    from safetensors import safe_open

    if (folder / "optimizer.pt").is_file() and not (folder / OPTIMIZER).is_file():
        return "its resume state is pickled (an older onthejob wrote it), and pickles are never loaded"
    weights = sorted(folder.glob("*.safetensors"))
    if not any(w.name != OPTIMIZER for w in weights):
        return "no weights (adapter_model.safetensors or model.safetensors)"
    if not (folder / OPTIMIZER).is_file():
        return f"{OPTIMIZER} is missing"
    for name in (STATE, SCHEDULER, RNG):
        try:
            json.loads((folder / name).read_text())
        except FileNotFoundError:
            return f"{name} is missing"
        except (OSError, ValueError) as e:
            return f"{name} is damaged ({type(e).__name__})"
    for path in weights:
        try:
            with safe_open(str(path), framework="pt"):
                pass  # opening checks the header and that the file is as long as it says
        except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged file
            return f"{path.name} is damaged ({str(e)[:80] or type(e).__name__})"
    return None


def latest(run: Path, run_id: str | None = None, warn=print) -> Path | None:
    """The newest checkpoint that can be resumed from; a damaged newer one is passed over with a
    warning. Checkpoints that exist but are all unusable are a RunError saying why."""
    reasons = []
    for folder in reversed(complete_checkpoints(run, run_id)):
        why = problem(folder)
        if why is None:
            if reasons:
                warn(f"warning: resuming from {folder.name}, the newest usable checkpoint; passed over " + "; ".join(reasons))
            return folder
        reasons.append(f"{folder.name}: {why}")
    if reasons:
        raise RunError(f"{run}: no checkpoint can be resumed from ({'; '.join(reasons)})",
                       fix=f"start the run again: ojt train ... --output_dir {run} --overwrite")
    return None


# --- loading --------------------------------------------------------------------------------


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
    load_optimizer(optimizer, folder / OPTIMIZER)
    scheduler.load_state_dict(json.loads((folder / SCHEDULER).read_text()))
    set_rng_state(json.loads((folder / RNG).read_text()))
    return json.loads((folder / STATE).read_text())
