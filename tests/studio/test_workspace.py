from __future__ import annotations

import asyncio

import pytest

from onthejob.studio.workspace import PathError, Workspace, check_name


async def _chunks(*parts: bytes):
    for p in parts:
        yield p


def test_paths_from_the_browser_stay_inside_the_workspace(tmp_path):
    ws = Workspace(tmp_path / "ws")
    (ws.root / "uploads" / "a.jsonl").write_text("{}\n")
    assert ws.path("uploads/a.jsonl") == ws.root / "uploads" / "a.jsonl"
    for bad in ("../outside.jsonl", "uploads/../../x", "/etc/passwd", "C:\\x", "uploads/a\x00b", ""):
        with pytest.raises(PathError, match="workspace"):
            ws.path(bad, must_exist=False)
    (tmp_path / "secret.txt").write_text("no")
    (ws.root / "uploads" / "link").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(PathError, match="outside the workspace"):
        ws.path("uploads/link")  # a symlink is followed before the check


def test_names_are_single_plain_components():
    assert check_name("hr run 2.v1", "run name") == "hr run 2.v1"
    for bad in ("..", "../x", "a/b", ".hidden", " lead", "x" * 200, "a..b"):
        with pytest.raises(PathError, match="is not allowed"):
            check_name(bad, "run name")


def test_an_upload_is_bounded_typed_and_atomic(tmp_path):
    ws = Workspace(tmp_path / "ws")
    path = asyncio.run(ws.save_upload("t.jsonl", _chunks(b"a" * 10, b"b" * 10), limit=100))
    assert path.read_bytes() == b"a" * 10 + b"b" * 10
    with pytest.raises(PathError, match="larger than"):
        asyncio.run(ws.save_upload("big.jsonl", _chunks(b"a" * 60, b"b" * 60), limit=100))
    with pytest.raises(PathError, match="larger than"):
        asyncio.run(ws.save_upload("big.jsonl", _chunks(), limit=100, declared=10**9))
    with pytest.raises(PathError, match="not accepted"):
        asyncio.run(ws.save_upload("tool.exe", _chunks(b"MZ"), limit=100))
    assert sorted(p.name for p in (ws.root / "uploads").iterdir()) == ["t.jsonl"]  # no partial file kept
