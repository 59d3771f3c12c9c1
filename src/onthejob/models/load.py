"""Load a model and its tokenizer by any name onthejob accepts (see ``registry.resolve``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from onthejob.errors import ModelError
from onthejob.models.registry import resolve


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
