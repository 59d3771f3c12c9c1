"""Fold a trained adapter into its base model: one standalone folder any tool can load.

    ojt merge runs/support --out models/support-merged

The result is a plain transformers model folder (safetensors weights, config, tokenizer and the
chat template the run trained with): ``AutoModelForCausalLM.from_pretrained(out)`` loads it with
no PEFT and no onthejob. The weights are merged in float32 and saved in the dtype the base model
was stored in, so a bf16 base gives a bf16 merged model of the same size.

A fully fine-tuned run is already a full model: merging it copies its ``final/`` folder to
``out``, so ``ojt merge`` gives a standalone folder for any run. Naming a plain model (not a run
or an adapter) is an error: there is nothing to merge.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from onthejob.errors import ModelError
from onthejob.fsutil import atomic_dir
from onthejob.models.adapters import locate


def merge(run_or_adapter: str | Path, out_dir: str | Path) -> Path:
    """Write the merged model of ``run_or_adapter`` to ``out_dir`` (replaced atomically)."""
    found = locate(run_or_adapter)
    out = Path(out_dir).expanduser()
    _check_out(out, [p for p in (found.run, found.adapter, Path(found.model)) if p is not None])
    if found.adapter is None:
        if found.method != "full":
            raise ModelError(
                f"{run_or_adapter} is a model, not a run or adapter: there is nothing to merge",
                fix="name a run folder (or its final/ adapter folder)",
            )
        with atomic_dir(out) as tmp:
            shutil.copytree(found.model, tmp, dirs_exist_ok=True)
        return out
    model, tokenizer = merged_model(run_or_adapter, stored_dtype(found.model))
    with atomic_dir(out) as tmp:
        save_merged(model, tokenizer, tmp)
    return out


def save_merged(model, tokenizer, folder: Path, *, shard_size: str = "2GB") -> None:
    """Save a merged model so that any runtime stops where the run stops: safetensors shards, the
    tokenizer with the run's chat template, and a generation config whose EOS ids are the
    template's end-of-turn tokens (plain ``generate`` and vLLM read them from there)."""
    from onthejob.data.template import end_of_turn_ids

    stops = list(dict.fromkeys([*end_of_turn_ids(tokenizer), tokenizer.eos_token_id]))
    model.generation_config.eos_token_id = [i for i in stops if i is not None]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, max_shard_size=shard_size)  # safetensors, the transformers default
    tokenizer.save_pretrained(folder)  # writes the chat template as well


def merged_model(name: str | Path, stored: str | None = None):
    """(model, tokenizer) of ``name`` with its adapter folded in, in float32 or ``stored`` dtype."""
    import torch

    from onthejob.models.adapters import load_for_inference

    loaded = load_for_inference(name, dtype=torch.float32)
    model = loaded.model
    if hasattr(model, "merge_and_unload"):  # a fully fine-tuned run is a plain model already
        model = model.merge_and_unload()  # a plain transformers model, adapter folded in
    dtype = getattr(torch, stored, None) if stored else None
    if isinstance(dtype, torch.dtype) and dtype != torch.float32:
        model.to(dtype)
    model.config.dtype = model.dtype
    return model, loaded.tokenizer


def stored_dtype(where: str) -> str | None:
    """The dtype the base's config.json records (the model is loaded as float32 to merge)."""
    path = Path(where) / "config.json"
    if not path.is_file():
        return None  # a hub model: keep float32 rather than guess
    config = json.loads(path.read_text(encoding="utf-8"))
    return config.get("dtype") or config.get("torch_dtype")


def _check_out(out: Path, sources: list[Path]) -> None:
    """Refuse an ``out`` that would overwrite the inputs or a folder that is not a model."""
    target = out.resolve()
    for source in sources:
        if not source.exists():
            continue
        source = source.resolve()
        if target == source or target in source.parents:
            raise ModelError(f"--out {out} holds {source}, which merging reads from",
                             fix="choose a new folder for the merged model")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise ModelError(f"--out {out} exists and is not a model folder; it would be replaced",
                         fix="choose a new or empty folder")
