"""The files a studio keeps, all under one workspace folder; no path from the browser leaves it.

    WS/uploads/       files people uploaded (training data, documents)
    WS/runs/NAME/     training runs (each an ordinary ``ojt train`` run folder)
    WS/jobs/ID/       one folder per job: job.json, log.txt, exit.json, its config and report
    WS/models/        model folders the pages may pick (besides the known models)
    WS/datasets/      what the studio writes for training: reviewed examples, preference pairs, splits
    WS/studio.sqlite3 jobs, and reviews (data/feedback.py's tables)
    WS/rag.sqlite3    the workspace's RAG collections
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

from onthejob.errors import DataError

UPLOAD_TYPES = (".jsonl", ".json", ".csv", ".tsv", ".txt", ".md", ".html", ".htm", ".pdf", ".docx")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$")
FOLDERS = ("uploads", "runs", "jobs", "datasets")


class PathError(DataError):
    """A path or name from the browser that the workspace refuses (HTTP 400)."""


class Workspace:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        for name in FOLDERS:
            (self.root / name).mkdir(parents=True, exist_ok=True)

    @property
    def db(self) -> Path:
        return self.root / "studio.sqlite3"

    @property
    def rag_store(self) -> str:
        return f"sqlite:///{self.root / 'rag.sqlite3'}"

    def path(self, rel: str, *, must_exist: bool = True) -> Path:
        """``rel`` (relative to the workspace) as an absolute path inside it, or PathError."""
        if not isinstance(rel, str) or not rel or "\x00" in rel or rel.startswith(("/", "\\")) or ":" in rel:
            raise PathError(f"{rel!r} is not a path inside the workspace", fix="give a path such as uploads/train.jsonl")
        path = (self.root / rel).resolve()
        if path != self.root and self.root not in path.parents:
            raise PathError(f"{rel!r} points outside the workspace", fix="give a path such as uploads/train.jsonl")
        if must_exist and not path.exists():
            raise PathError(f"{rel} does not exist in the workspace", fix="upload it first, or pick one from the list")
        return path

    def rel(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def run_dir(self, name: str) -> Path:
        return self.root / "runs" / check_name(name, "run name")

    def files(self, folder: str = "uploads") -> list[dict]:
        base = self.path(folder)
        out = []
        for f in sorted(base.rglob("*")):
            if f.is_file() and not any(p.startswith(".") for p in f.relative_to(base).parts):
                out.append({"path": self.rel(f), "name": f.name, "bytes": f.stat().st_size, "modified": f.stat().st_mtime})
        return out

    async def save_upload(self, name: str, chunks: AsyncIterator[bytes], *, limit: int, declared: int | None = None) -> Path:
        """Write an upload to uploads/NAME through a temporary file, refusing a type the readers
        do not know and stopping at ``limit`` bytes (nothing is kept of a refused upload)."""
        name = check_name(name, "file name")
        if Path(name).suffix.lower() not in UPLOAD_TYPES:
            raise PathError(f"{name}: files of this type are not accepted", fix=f"upload one of {', '.join(UPLOAD_TYPES)}")
        if declared is not None and declared > limit:
            raise _too_large(name, limit)
        dest = self.root / "uploads" / name
        tmp = dest.with_name(f".{name}.upload.tmp")
        size = 0
        try:
            with open(tmp, "wb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(name, limit)
                    f.write(chunk)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest


def _too_large(name: str, limit: int) -> PathError:
    return PathError(f"{name} is larger than {limit // 1_000_000} MB", fix="upload a smaller file, or start the studio with a larger --max-upload-mb")


def check_name(name: str, what: str) -> str:
    """A single file or folder name: letters, digits, ``._ -``, at most 128 characters, not hidden."""
    if not isinstance(name, str) or not NAME.match(name) or name.strip() != name or ".." in name:
        raise PathError(f"{what} {name!r} is not allowed", fix="use letters, digits, '.', '_', '-' and spaces (at most 128), not starting with a dot")
    return name
