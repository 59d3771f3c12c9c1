from __future__ import annotations

import pytest

from tests.serve.server_helpers import make_world


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A tiny base model and two LoRA runs on it, shared by every server test."""
    return make_world(tmp_path_factory.mktemp("serve"))
