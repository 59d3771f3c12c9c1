"""Helpers shared by the data tests."""

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA


def shared(rel: str) -> Path:
    path = SHARED_DATA / rel
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data sits beside the repo in CI, not in a user's clone)")
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path
