"""Load whatever a user names for inference: a run, an adapter, a model folder or a model name.

    from onthejob.models.adapters import load_for_inference
    loaded = load_for_inference("runs/support")          # ojt chat runs/support
    print(loaded.description)

What a name can be, checked in this order:
  * a run folder (holds ``run.json``): its ``final/`` folder, loaded as below;
  * an adapter folder (holds ``adapter_config.json``: ``RUN/final``, a checkpoint): the base
    model from the adapter's ``base_model_name_or_path``, or when that folder is gone (a run
    copied to another machine) from the enclosing run's ``run.json``; the adapter goes on top
    (``peft.PeftModel``, unmerged; ``merge.py`` folds it in);
  * a full model folder (holds ``config.json``), a known model name or a hub id: loaded as is;
  * a GGUF file (``ojt export``): run by llama.cpp, not loaded here (``generate/llamacpp.py``);
    ``locate`` names its base and system prompt from the ``export.json`` beside it.

The tokenizer, and so the chat template, comes from the adapter or run folder when it holds one
(the template the model was trained with), else from the base model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onthejob.errors import ModelError, RunError
from onthejob.models.load import load_tokenizer, resolve

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclass
class Located:
    """Where the pieces of a named model are, before any weights are read."""

    model: str  # a full model folder, known name or hub id: the base when there is an adapter
    adapter: Path | None  # the PEFT adapter folder, if any
    tokenizer: str  # where the tokenizer (and chat template) comes from
    base_name: str  # the base model as the user named it (run.json), else as resolved
    run: Path | None  # the run folder, when a run was named
    method: str  # "lora", "ia3", ... for adapters; "full" for a fine-tuned model; "base" otherwise


@dataclass
class Loaded:
    """A model ready for the engine, with where it came from."""

    model: Any  # a transformers model, or a peft.PeftModel wrapping one
    tokenizer: Any
    base_name: str
    adapter_path: Path | None
    description: str  # one line for headers and logs
    system_prompt: str | None = None  # the one system prompt every training example had, if any


def locate(name: str | Path) -> Located:
    """Find the base model, adapter and tokenizer behind ``name``; see the module docstring."""
    path = Path(str(name)).expanduser()
    if (path / "run.json").is_file():
        return _locate_run(path)
    if path.name == "final" and (path.parent / "run.json").is_file():
        return _locate_run(path.parent)  # RUN/final named directly
    if (path / "adapter_config.json").is_file():
        return _locate_adapter(path, run=None)
    from onthejob.models.exported import exported_from, is_gguf

    if is_gguf(path):
        base = exported_from(path).get("base") or str(path)
        return Located(str(path), None, str(path), str(base), None, "gguf")
    where = resolve(name)
    return Located(where, None, where, str(name), None, "base")


def load_for_inference(name: str | Path, *, dtype=None, device: str | None = None) -> Loaded:
    """Load ``name`` in eval mode. ``dtype``: a torch dtype or "auto" (as stored); default
    float32, as ``load_model``. The adapter runs unmerged (``merge.py`` folds it in)."""
    found = locate(name)
    # The base's own tokenizer is not loaded when the adapter brings one: a base model without a
    # chat template is fine when training gave it one.
    tokenizer = load_tokenizer(found.tokenizer)
    model = _load_weights(found.model, dtype)
    if found.adapter is not None:
        model = _with_adapter(model, tokenizer, found.adapter)
    if device:
        model.to(device)
    model.eval()
    system = _run_json(found.run).get("system_prompt") if found.run else None
    return Loaded(model, tokenizer, found.base_name, found.adapter, describe(found), system)


def trained_system_prompt(name: str | Path) -> str | None:
    """The one system prompt every training example of the run behind ``name`` had, if any."""
    found = locate(name)
    return _run_json(found.run).get("system_prompt") if found.run else None


def describe(found: Located) -> str:
    if found.adapter is not None:
        return f"{found.base_name} + {found.method} adapter {found.adapter}"
    if found.method == "full":
        return f"{found.model} (fully fine-tuned from {found.base_name})"
    return found.base_name


def _locate_run(run: Path) -> Located:
    final = run / "final"
    if not final.is_dir():
        raise RunError(
            f"{run} has no final/ folder: training did not finish",
            fix=f"resume with: ojt train --resume {run}",
        )
    if (final / "adapter_config.json").is_file():
        return _locate_adapter(final, run=run)
    if (final / "config.json").is_file():
        base = str(_run_json(run).get("base_model", final))
        return Located(str(final), None, str(final), base, run, "full")
    raise RunError(f"{final} holds neither an adapter nor a model", fix="train the run again")


def _locate_adapter(adapter: Path, run: Path | None) -> Located:
    config = _read_json(adapter / "adapter_config.json", ModelError)
    run = run or _enclosing_run(adapter)
    named = _run_json(run).get("base_model") if run else None
    recorded = config.get("base_model_name_or_path")
    # The recorded base is the resolved cache folder on the machine that trained; prefer it while
    # it exists, else fall back to the name in run.json (a known name converts again here).
    if recorded and Path(recorded).is_dir():
        base = recorded
    elif named:
        base = resolve(str(named))
    elif recorded:
        base = resolve(recorded)  # a hub id
    else:
        raise ModelError(
            f"{adapter}: adapter_config.json names no base model and no run.json is beside it",
            fix="set base_model_name_or_path in adapter_config.json",
        )
    has_tokenizer = any((adapter / f).is_file() for f in TOKENIZER_FILES)
    tokenizer = str(adapter) if has_tokenizer else base
    method = str(config.get("peft_type", "adapter")).lower()
    return Located(base, adapter, tokenizer, str(named or recorded or base), run, method)


def _load_weights(where: str, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(where, dtype=dtype or torch.float32)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a model from {where}: {e}") from e


def _with_adapter(model, tokenizer, adapter: Path):
    from peft import PeftModel

    # A run that added tokens saved a larger embedding; the base must grow to match before the
    # adapter's weights are loaded into it (PEFT's documented order).
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    try:
        return PeftModel.from_pretrained(model, str(adapter))
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelError(f"cannot load the adapter in {adapter}: {e}") from e


def _enclosing_run(adapter: Path) -> Path | None:
    """The run an adapter folder sits in: RUN/final or RUN/checkpoints/step-N."""
    for folder in list(adapter.resolve().parents)[:2]:
        if (folder / "run.json").is_file():
            return folder
    return None


def _run_json(run: Path) -> dict[str, Any]:
    return _read_json(run / "run.json", RunError)


def _read_json(path: Path, error: type[ModelError] | type[RunError]) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise error(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise error(f"{path} is not a JSON object")
    return data
