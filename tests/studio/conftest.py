"""A workspace with a tiny model in it (``models/tiny``) and the studio's API over it."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.runs import save_base

HR = Path(__file__).resolve().parents[2] / "examples" / "hr"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    save_base(ws / "models" / "tiny")
    return ws


@pytest.fixture
def client(workspace: Path):
    from fastapi.testclient import TestClient

    from onthejob.studio.app import create_app
    from onthejob.studio.config import StudioConfig

    with TestClient(create_app(StudioConfig(workspace=workspace))) as c:
        yield c


def wait_job(get, job_id: str, timeout: float = 180, until=("done", "failed", "stopped", "cancelled")) -> dict:
    """Poll ``get("/api/jobs/ID")`` until the job's status is one of ``until``."""
    deadline = time.monotonic() + timeout
    while True:
        job = get(f"/api/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")
        time.sleep(0.3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
