"""The ``store`` fixture: every store test runs once on SQLite and once on PostgreSQL + pgvector.

The PostgreSQL server comes from the PyPI package ``pgserver`` (a private server with pgvector,
on a Unix socket in a temporary folder), started once per session; each test gets its own
database. Without pgserver the postgres half skips and says so.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import pytest

from onthejob.rag.stores import open_store

_databases = itertools.count()


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing here may touch the user's real cache."""
    monkeypatch.setenv("ONTHEJOB_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def pg_server():
    try:
        import pgserver
    except ImportError:
        pytest.skip("pgserver is not installed (pip install pgserver psycopg[binary]): postgres store untested")
    # Not under pytest's temp folder: as root, pgserver runs postgres as its own user and opens the
    # folders above the data to it, which pytest (any session on the machine) closes again. Short,
    # too: a Unix socket path must stay under ~100 bytes.
    data = Path(tempfile.mkdtemp(prefix="ojt-pg-"))
    server = pgserver.get_server(data, cleanup_mode="stop")
    yield server
    server.cleanup()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rag.sqlite3'}"
    server = request.getfixturevalue("pg_server")
    name = f"rag_test_{next(_databases)}"
    server.psql(f"CREATE DATABASE {name};")
    return server.get_uri(name)


@pytest.fixture
def store(store_url: str):
    with open_store(store_url) as opened:
        yield opened
