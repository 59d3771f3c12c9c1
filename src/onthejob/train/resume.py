"""Resuming a run: the saved config is the base, the command line may change some keys, and
every disagreement is reported, naming the winner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onthejob.train import runfolder
from onthejob.train.config import TrainConfig, set_dotted
from onthejob.train.progress import say

# Keys the saved state depends on: changing them would not continue the same run.
FROZEN = ("model", "method", "lora", "ia3", "freeze_layers", "data", "seed", "micro_batch_size", "grad_accum", "loss_chunk")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def reconcile(run_dir: Path, saved: TrainConfig, asked: TrainConfig, fingerprint) -> TrainConfig:
    old, new = _flat(saved.model_dump(mode="json")), _flat(asked.model_dump(mode="json"))
    result = dict(new)
    for key in sorted(set(old) | set(new)):
        if key == "output_dir" or old.get(key) == new.get(key):
            continue
        if key.split(".")[0] in FROZEN:
            say(f"warning: {key} is {new.get(key)!r} on the command line but {old.get(key)!r} in the checkpoint; the checkpoint wins (it cannot change mid-run)")
            result[key] = old.get(key)
        else:
            say(f"warning: {key} changes from {old.get(key)!r} (checkpoint) to {new.get(key)!r}; the new value wins")
    result["output_dir"] = str(run_dir)
    merged = _unflat(result)
    config = TrainConfig.model_validate(merged)
    saved_data = runfolder.read_info(run_dir).get("data", {})
    current = fingerprint(config)
    for path, digest in current.items():
        if saved_data.get(path) not in (None, digest):
            say(f"warning: {path} changed since the run started; the file as it is now wins, and the data order may differ")
    return config


def _unflat(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        set_dotted(out, key, value)
    return out
