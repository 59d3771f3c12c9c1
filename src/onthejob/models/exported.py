"""Recognise a GGUF file and read what ``ojt export`` wrote beside it (``export.json``).

A GGUF is never loaded by transformers here: llama.cpp runs it (``generate/llamacpp.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def is_gguf(name: str | Path) -> bool:
    """Whether ``name`` is a GGUF file (by its magic bytes, not only its suffix)."""
    path = Path(str(name)).expanduser()
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def exported_from(path: str | Path) -> dict[str, Any]:
    """What ``ojt export`` recorded beside a GGUF (export.json: base, system prompt, ...), or {}."""
    manifest = Path(str(path)).expanduser().parent / "export.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return data if isinstance(files, dict) and Path(str(path)).name in files else {}
