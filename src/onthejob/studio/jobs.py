"""The processes a studio starts: training, compare, index, synth and serve, each a job.

A job is a row in the workspace database and a folder ``WS/jobs/ID/`` (``job.json`` with its
argv, ``log.txt``, and ``exit.json`` once it ends). Each runs ``python -m onthejob.studio.worker
FOLDER``, which calls the CLI's own ``main(argv)``: the same code as the command line, in its own
process (never in the web server), with an argv list (never a shell string). Jobs other than
serve wait in a queue until fewer than ``max_running`` run. Stop sends SIGINT, which a training
run answers with a checkpoint (resume continues it) and every other command by ending.

Job processes live in their own session, so they outlive the studio: a restarted studio finds
the running ones by their pid (checked against the process's start time) and the ended ones by
their ``exit.json``; a job whose process died without one (kill -9) is marked ``failed``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from onthejob import fsutil

KINDS = ("train", "compare", "index", "synth", "serve")
QUEUED = ("train", "compare", "index", "synth")  # serve starts at once: it runs until stopped
ENDED = ("done", "failed", "stopped", "cancelled")
MAX_LOG = 256 * 1024  # bytes of log one request returns
INTERRUPTED = 130  # the CLI's exit code after Ctrl-C (SIGINT)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    argv TEXT NOT NULL,          -- JSON list given to onthejob.cli.main
    meta TEXT NOT NULL,          -- JSON: what the pages need (run folder, report folder, port ...)
    status TEXT NOT NULL,        -- queued, running, done, failed, stopped, cancelled
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    pid INTEGER,
    pid_started REAL,            -- the process's start time, so a reused pid is not taken for it
    exit_code INTEGER
);
"""
COLUMNS = ("id", "kind", "title", "argv", "meta", "status", "created", "started", "ended", "pid", "pid_started", "exit_code")


class Jobs:
    """The job table and the thread that starts queued jobs and notices ended ones."""

    def __init__(self, root: Path, db: Path, *, max_running: int = 1, poll: float = 0.5):
        self.root, self.db_path, self.max_running, self.poll = Path(root), Path(db), max_running, poll
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        self.tick()
        self._thread = threading.Thread(target=self._watch, name="studio-jobs", daemon=True)
        self._thread.start()

    # --- asking ---------------------------------------------------------------------------

    def submit(self, kind: str, argv: list[str], *, title: str, meta: dict[str, Any] | None = None,
               files: dict[str, str] | None = None) -> dict:
        """Queue ``ojt ARGV``. ``files``: name -> text written into the job's folder first; a
        ``{job}`` in an argument stands for that folder (``["train", "{job}/config.yaml"]``)."""
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        if not all(isinstance(a, str) for a in argv):
            raise ValueError("argv must be a list of strings")
        job_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        folder = self.folder(job_id)
        folder.mkdir(parents=True)
        for name, text in (files or {}).items():
            fsutil.write_text(folder / name, text)
        argv = [a.replace("{job}", str(folder)) for a in argv]
        fsutil.write_json(folder / "job.json", {"id": job_id, "kind": kind, "argv": argv})
        row = {"id": job_id, "kind": kind, "title": title[:200], "argv": json.dumps(argv), "meta": json.dumps(meta or {}),
               "status": "queued", "created": time.time()}
        with self._db() as db:
            db.execute("INSERT INTO jobs (id, kind, title, argv, meta, status, created) "
                       "VALUES (:id, :kind, :title, :argv, :meta, :status, :created)", row)
        self.tick()
        return self.get(job_id)

    def get(self, job_id: str) -> dict:
        with self._db() as db:
            row = db.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return _job(row)

    def list(self, kind: str | None = None, limit: int = 200) -> list[dict]:
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        with self._db() as db:
            rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs {where} ORDER BY created DESC LIMIT ?",
                              (*args, min(limit, 1000))).fetchall()
        return [_job(r) for r in rows]

    def stop(self, job_id: str) -> dict:
        """Cancel a queued job, or ask a running one to stop (SIGINT: a training run checkpoints)."""
        job = self.get(job_id)
        if job["status"] == "queued":
            self._set(job_id, status="cancelled", ended=time.time())
        elif job["status"] == "running" and _alive(job):
            with contextlib.suppress(ProcessLookupError):
                os.kill(job["pid"], signal.SIGINT)
        return self.get(job_id)

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def log(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        """The job's log from byte ``offset`` (at most MAX_LOG bytes) and the offset after it."""
        path = self.folder(self.get(job_id)["id"]) / "log.txt"
        if not path.is_file():
            return "", offset
        with open(path, "rb") as f:
            f.seek(max(0, offset))
            data = f.read(MAX_LOG)
        return data.decode("utf-8", "replace"), max(0, offset) + len(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # --- the watcher ----------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            with contextlib.suppress(sqlite3.Error, OSError):
                self.tick()

    def tick(self) -> None:
        """Mark ended jobs, then start queued ones while there is room."""
        with self._lock:
            running = [j for j in self.list() if j["status"] == "running"]
            for job in running:
                self._check(job)
            busy = sum(1 for j in self.list() if j["status"] == "running" and j["kind"] in QUEUED)
            for job in sorted((j for j in self.list() if j["status"] == "queued"), key=lambda j: j["created"]):
                if job["kind"] in QUEUED and busy >= self.max_running:
                    continue
                self._start(job)
                busy += job["kind"] in QUEUED

    def _check(self, job: dict) -> None:
        proc = self._procs.get(job["id"])
        if proc is not None and proc.poll() is None:
            return
        if proc is None and _alive(job):
            return
        self._procs.pop(job["id"], None)
        exit_file = self.folder(job["id"]) / "exit.json"
        try:
            code = int(json.loads(exit_file.read_text())["code"])
        except (OSError, ValueError, KeyError, TypeError):
            code = proc.returncode if proc is not None and proc.returncode is not None else -9
        status = "done" if code == 0 else "stopped" if code == INTERRUPTED else "failed"
        self._set(job["id"], status=status, exit_code=code, ended=time.time())

    def _start(self, job: dict) -> None:
        folder = self.folder(job["id"])
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        with open(folder / "log.txt", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "onthejob.studio.worker", str(folder)], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._procs[job["id"]] = proc
        self._set(job["id"], status="running", started=time.time(), pid=proc.pid, pid_started=_start_time(proc.pid))

    # --- storage --------------------------------------------------------------------------

    def _set(self, job_id: str, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        with self._db() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values.values(), job_id))

    @contextlib.contextmanager
    def _db(self):
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()


def _job(row: tuple) -> dict:
    job = dict(zip(COLUMNS, row, strict=True))
    job["argv"], job["meta"] = json.loads(job["argv"]), json.loads(job["meta"])
    return job


def _start_time(pid: int) -> float | None:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).create_time()
    return None


def _alive(job: dict) -> bool:
    """Whether the job's own process still runs (not a later process given the same pid)."""
    if not job.get("pid"):
        return False
    try:
        proc = psutil.Process(job["pid"])
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return job.get("pid_started") is None or abs(proc.create_time() - job["pid_started"]) < 1.0
    except psutil.Error:
        return False
