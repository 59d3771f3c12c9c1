"""Jobs outlive the studio: a studio killed mid-training and started again finds the run, and a
run stopped from the page is resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from onthejob.studio.jobs import Jobs
from tests.studio.conftest import HR, free_port, wait_job


def _studio(workspace, port):
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from onthejob.cli import main; sys.exit(main(sys.argv[1:]))", "studio", "--workspace", str(workspace), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    client = _Client(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.get("/api/info")
            return proc, client
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the studio did not start") from None
            time.sleep(0.2)


def _metrics(client, run):
    return client.get(f"/api/runs/{run}/metrics").json()


def test_a_killed_studio_finds_its_training_job_again_and_stop_leaves_it_resumable(workspace):
    (workspace / "uploads").mkdir(parents=True, exist_ok=True)
    (workspace / "uploads" / "train.jsonl").write_bytes((HR / "train.jsonl").read_bytes())
    port = free_port()
    proc, client = _studio(workspace, port)
    body = {"name": "hr", "model": "models/tiny", "data": ["uploads/train.jsonl"], "settings": {"max_steps": "600"}}
    job = client.post("/api/train", json=body).json()
    try:
        deadline = time.monotonic() + 60
        while len(_metrics(client, "hr")) < 2:
            assert time.monotonic() < deadline, client.get(f"/api/jobs/{job['id']}/log").json()["text"]
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # the studio dies; its training job goes on
        proc.wait()
        proc, client = _studio(workspace, port)
        again = client.get(f"/api/jobs/{job['id']}").json()
        assert again["status"] == "running" and again["pid"] == job["pid"]
        seen = len(_metrics(client, "hr"))
        time.sleep(1.0)
        assert len(_metrics(client, "hr")) > seen  # still training, and the new studio sees it
        client.post(f"/api/jobs/{job['id']}/stop")
        stopped = wait_job(client.get, job["id"], timeout=60)
        assert (stopped["status"], stopped["exit_code"]) == ("stopped", 130)
        run = next(r for r in client.get("/api/runs").json() if r["name"] == "hr")
        assert run["status"] == "stopped" and run["resumable"] and run["checkpoint"].startswith("step-")
        resumed = client.post("/api/runs/hr/resume").json()
        assert resumed["argv"] == ["train", "--resume", str(workspace.resolve() / "runs" / "hr")]
        step = int(run["checkpoint"].split("-")[1])
        deadline = time.monotonic() + 60
        while max((r["step"] for r in _metrics(client, "hr")), default=0) <= step:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        client.post(f"/api/jobs/{resumed['id']}/stop")
        assert wait_job(client.get, resumed["id"], timeout=60)["status"] == "stopped"
        log = client.get(f"/api/jobs/{resumed['id']}/log").json()["text"]
        assert f"resumed at step {step}" in log, log[-2000:]
    finally:
        for j in client.get("/api/jobs").json():
            if j["status"] == "running" and j["pid"]:
                os.kill(j["pid"], signal.SIGKILL)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_jobs_wait_their_turn_and_a_queued_one_can_be_cancelled(tmp_path):
    jobs = Jobs(tmp_path / "jobs", tmp_path / "studio.sqlite3", max_running=1)
    try:
        slow = jobs.submit("index", ["rag", "index", str(tmp_path / "missing.md"), "--collection", "c",
                                     "--store", f"sqlite:///{tmp_path / 'rag.sqlite3'}"], title="first")
        waiting = jobs.submit("index", ["data", "check", str(HR / "eval.jsonl")], title="second")
        later = jobs.submit("index", ["data", "check", str(HR / "eval.jsonl")], title="third")
        assert (slow["status"], waiting["status"], later["status"]) == ("running", "queued", "queued")
        assert jobs.stop(later["id"])["status"] == "cancelled"
        first = wait_job(lambda p: _Json(jobs.get(p.rsplit("/", 1)[1])), slow["id"], timeout=60)
        assert first["status"] == "failed" and first["exit_code"] != 0  # the missing file: the CLI's error, in the log
        assert "missing.md" in jobs.log(slow["id"])[0]
        assert wait_job(lambda p: _Json(jobs.get(p.rsplit("/", 1)[1])), waiting["id"], timeout=60)["status"] == "done"
        assert jobs.get(later["id"])["status"] == "cancelled" and jobs.get(later["id"])["pid"] is None
    finally:
        jobs.close()


class _Client:
    """Just enough of an HTTP client (the standard library's) for a studio in another process."""

    def __init__(self, base: str):
        self.base = base

    def get(self, path: str):
        return self._call(urllib.request.Request(self.base + path))

    def post(self, path: str, json=None):
        data = b"{}" if json is None else __import__("json").dumps(json).encode()
        return self._call(urllib.request.Request(self.base + path, data=data, headers={"Content-Type": "application/json"}))

    @staticmethod
    def _call(request):
        with urllib.request.urlopen(request, timeout=30) as r:
            return _Json(__import__("json").loads(r.read()))


class _Json:
    def __init__(self, value):
        self.value = value

    def json(self):
        return self.value
