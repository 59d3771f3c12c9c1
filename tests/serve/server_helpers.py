"""A tiny base model with two LoRA runs on disk, a server in a background thread, raw HTTP."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from onthejob.serve.connection import uvicorn_options
from tests.runs import save_base, save_lora
from tests.tiny import CHATML_TEMPLATE, tiny_tokenizer

# Beta was "trained" with its own chat template: another default system prompt.
BETA_TEMPLATE = CHATML_TEMPLATE.replace("You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                                        "You are Beta")


def make_world(root: Path) -> dict[str, Path]:
    """root/base (a tiny model), root/runs/alpha and root/runs/beta (runs of two LoRA adapters)."""
    base = save_base(root / "base")
    for name, seed in (("alpha", 1), ("beta", 2)):
        run = root / "runs" / name
        save_lora(base, run / "final", seed=seed)
        (run / "run.json").write_text(json.dumps({"base_model": str(base), "method": "lora"}), encoding="utf-8")
    beta_tok = tiny_tokenizer("chatml").__class__.from_pretrained(root / "runs" / "beta" / "final")
    beta_tok.chat_template = BETA_TEMPLATE
    beta_tok.save_pretrained(root / "runs" / "beta" / "final")
    return {"base": base, "runs": root / "runs", "alpha": root / "runs" / "alpha", "beta": root / "runs" / "beta"}


@contextlib.contextmanager
def served(config):
    """A ready server for ``config`` in this process (what ``ojt serve`` runs), stopped after."""
    from onthejob.serve.server import create_app

    s = ServerThread(create_app(config))
    s.wait_ready()
    try:
        yield s
    finally:
        s.stop()


class ServerThread:
    """uvicorn serving ``app`` (from ``create_app``) on a free loopback port, in a daemon thread."""

    def __init__(self, app):
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = self.root + "/v1"
        self.app = app
        options = uvicorn_options(app.state.ojt.config)  # what ``ojt serve`` runs with
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="on", **options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)

    @property
    def scheduler(self):
        return self.app.state.ojt.scheduler

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while raw("GET", self.root + "/health")[0] != 200:
            assert time.monotonic() < deadline, raw("GET", self.root + "/health")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def raw(method: str, url: str, body: bytes | dict | None = None, *, key: str | None = None,
        headers: dict | None = None) -> tuple[int, dict | str]:
    """(status, parsed JSON or text) of one request, errors included."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text
