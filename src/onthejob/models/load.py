"""Load a model and its tokenizer by any name onthejob accepts.

A model can be named three ways, everywhere a model is named (``resolve``):
  * a known name (``smollm2-135m-instruct``, models/registry.py): converted once into the cache,
    then loaded from it;
  * a local Hugging Face model folder (holds ``config.json``);
  * a hub id (``org/name``): transformers downloads it where a network exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from onthejob.errors import ModelError
from onthejob.models.convert import ensure_converted
from onthejob.models.registry import KNOWN


def load_tokenizer(name: str | Path, *, on_convert: Callable[[str], None] | None = None):
    from transformers import AutoTokenizer

    where = resolve(name, on_convert=on_convert)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a tokenizer from {where}: {e}") from e
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise ModelError(
            f"the tokenizer of {name} has no chat template",
            fix="use an instruct/chat model, or add a chat_template to its tokenizer_config.json",
        )
    return tokenizer


def load_model(name: str | Path, *, dtype=None, device: str | None = None, on_convert=None):
    """(model, tokenizer) in eval mode. ``dtype`` defaults to float32 (training casts by autocast)."""
    import torch
    from transformers import AutoModelForCausalLM

    where = resolve(name, on_convert=on_convert)
    try:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype or torch.float32)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a model from {where}: {e}") from e
    if device:
        model.to(device)
    model.eval()
    return model, load_tokenizer(where)


def resolve(name: str | Path, *, on_convert: Callable[[str], None] | None = None) -> str:
    """Turn a model name into something ``from_pretrained`` accepts: a local folder or a hub id."""
    text = str(name)
    if text in KNOWN:
        return str(ensure_converted(KNOWN[text], on_convert=on_convert))
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path)
        if (path / "adapter_config.json").is_file():
            return str(path)
        raise ModelError(
            f"{path} is a folder but not a model (no config.json)",
            fix="name a Hugging Face model folder, a run folder, or one of: " + ", ".join(KNOWN),
        )
    # "runs/missing" could be a hub id, but when ./runs exists the user meant a local folder.
    looks_local = text.startswith((".", "/", "~")) or path.suffix or text.count("/") != 1 or path.parent.is_dir()
    if looks_local:
        raise ModelError(
            f"unknown model {text!r}: no such folder and not a known name",
            fix="known models: " + ", ".join(KNOWN) + "; or give a local model folder or a hub id (org/name)",
        )
    return text  # a hub id; transformers fetches it where a network exists
