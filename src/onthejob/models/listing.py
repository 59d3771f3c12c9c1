"""``ojt models``: the known and cached models, with parameters, size on disk and origin."""

from __future__ import annotations

import json
from pathlib import Path

from onthejob import paths
from onthejob.console import human_bytes
from onthejob.models.convert import cache_problem
from onthejob.models.registry import KNOWN


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _params_from_config(folder: Path) -> int | None:
    # Count from the safetensors headers (shapes only), so listing never loads weights.
    import struct

    total = 0
    for st in folder.glob("*.safetensors"):
        with open(st, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for d in info["shape"]:
                    count *= d
                total += count
    return total or None


def list_models() -> list[dict]:
    rows = []
    cache = paths.models_dir()
    for model in KNOWN.values():
        folder = model.cache_dir()
        problem = cache_problem(folder)
        rows.append(
            {
                "name": model.name,
                "params": model.params,
                "size_bytes": _size(folder) if folder.exists() else 0,
                "status": "cached" if problem is None else ("not converted yet" if problem == "missing" else f"damaged: {problem}"),
                "path": str(folder),
                "origin": model.origin,
            }
        )
    if cache.is_dir():
        for folder in sorted(cache.iterdir()):
            if folder.name in KNOWN or folder.name.startswith(".") or not folder.is_dir():
                continue
            rows.append(
                {
                    "name": folder.name,
                    "params": _params_from_config(folder),
                    "size_bytes": _size(folder),
                    "status": "cached",
                    "path": str(folder),
                    "origin": "local cache",
                }
            )
    return rows


def format_models(rows: list[dict]) -> str:
    lines = [f"{'NAME':<26} {'PARAMS':>8} {'ON DISK':>9}  {'STATUS':<18} FROM"]
    for r in rows:
        params = f"{r['params'] / 1e6:.0f}M" if r["params"] else "?"
        lines.append(
            f"{r['name']:<26} {params:>8} {human_bytes(r['size_bytes']):>9}  {r['status']:<18} {r['origin']}"
        )
    lines.append(f"cache: {paths.models_dir()}  (set ONTHEJOB_HOME to move it)")
    return "\n".join(lines)
