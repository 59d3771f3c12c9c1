"""``ojt serve`` at its edges: bodies no client library would send, stalled uploads, what
``/health`` tells a caller without the key. Raw HTTP throughout."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time

import pytest

from onthejob.serve.config import ServeConfig
from onthejob.serve.server import create_app
from tests.serve.server_helpers import ServerThread, raw, served

KEY = "edge-key"
HELLO = [{"role": "user", "content": "Hello!"}]
READ_TIMEOUT = 2.0  # seconds; every other request here arrives at once


@pytest.fixture(scope="module")
def server(world):
    config = ServeConfig(model=str(world["base"]), adapters={"alpha": str(world["alpha"])}, adapter_dirs=[world["runs"]],
                         api_key=KEY, max_tokens=8, max_request_bytes=200_000, read_timeout=READ_TIMEOUT,
                         feedback_db=None)
    with served(config) as s:
        yield s


def _openai_error(status, body, param=None) -> int:
    """``status``, after checking that ``body`` is OpenAI's error shape naming ``param``."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param, body
    return status


# --- a) numbers past what later stages take -----------------------------------------------------


@pytest.mark.parametrize("fields, param", [
    ({"seed": 2**80}, "seed"),
    ({"seed": -(2**70)}, "seed"),
    ({"seed": 2**64 - 1, "n": 2}, "seed"),  # torch takes 2**64 - 1, but choice 2 gets seed + 1
    ({"seed": 2**80, "stream": True}, "seed"),
    ({"max_tokens": 2**80}, "max_tokens"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_completion_tokens": 2**80}, "max_completion_tokens"),
    ({"n": 2**80}, "n"),
    ({"n": -1}, "n"),
    ({"temperature": 10**400}, "temperature"),
])
def test_numbers_out_of_range_are_400s_naming_the_field(server, fields, param):
    body = {"model": "alpha", "messages": HELLO, "max_tokens": 2, **fields}
    assert _openai_error(*raw("POST", server.url + "/chat/completions", body, key=KEY), param=param) == 400


def test_the_widest_seeds_still_answer(server):
    for seed in (2**63 - 1, -(2**63)):
        body = {"model": "alpha", "messages": HELLO, "max_tokens": 2, "n": 2, "seed": seed}
        status, answer = raw("POST", server.url + "/chat/completions", body, key=KEY)
        assert status == 200 and len(answer["choices"]) == 2, answer


# --- b) bodies that are not what they claim -------------------------------------------------------

CHAT_OK = b'{"model": "alpha", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]'


@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", b"[" * 100_000, None),  # RecursionError in the JSON parser
    ("/v1/chat/completions", b'{"model": ' + b"[" * 3000 + b"]" * 3000 + b"}", None),
    ("/v1/chat/completions", CHAT_OK + b', "user": ' + b"[" * 200 + b"]" * 200 + b"}", None),  # parses, too deep
    ("/v1/chat/completions", CHAT_OK + b', "seed": ' + b"7" * 5000 + b"}", None),  # past Python's int digits
    ("/v1/chat/completions", b'{"model": "alpha", "messages": [{"role": "user", "content": "\\ud800"}]}', "messages.0.content"),
    ("/v1/chat/completions", b'{"model": "alpha", "messages": [{"role": "user", "content": [{"type": "text", "text": "a\\udfffb"}]}]}',
     "messages.0.content.0.text"),
    ("/v1/completions", b'{"model": "alpha", "prompt": "\\udfff"}', "prompt"),
    ("/admin/adapters", b'{"name": "x", "path": "\\ud800"}', "path"),
    ("/admin/adapters", b'{"name": "x", "path": "' + b"a" * 5000 + b'"}', "path"),  # ENAMETOOLONG
    ("/admin/adapters", b'{"name": "x", "path": "' + b"a/" * 3000 + b'"}', "path"),
    ("/v1/chat/completions", b"", None),
    ("/v1/chat/completions", b"\xff\xfe{", None),
    ("/v1/chat/completions", b"null", None),
    ("/v1/chat/completions", CHAT_OK + b', "temperature": NaN}', "temperature"),
    ("/v1/chat/completions", b'{"model": "alpha", "messages": [{"role": "user", "content": [1]}]}', "messages.0.content.str"),
])
def test_malformed_bodies_are_openai_shaped_400s(server, path, body, param):
    assert _openai_error(*raw("POST", server.root + path, body, key=KEY), param=param) == 400


def test_a_request_http_cannot_parse_gets_an_openai_shaped_400(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        status, body = _read_response(sock)
    assert _openai_error(status, body) == 400


def test_a_bug_is_an_openai_shaped_500_not_plain_text(server, monkeypatch):
    def broken(*_):
        raise RuntimeError("detail 42")

    monkeypatch.setattr(server.scheduler, "chat_prompt", broken)
    status, body = raw("POST", server.url + "/chat/completions", {"model": "alpha", "messages": HELLO}, key=KEY)
    assert status == 500 and body["error"]["type"] == "server_error" and "detail 42" not in body["error"]["message"], body


# --- c) clients that stop halfway ---------------------------------------------------------------

UPLOAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
          + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")  # the app waits for the body


def test_stalled_uploads_are_dropped_after_the_read_timeout_while_others_are_answered(server):
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT + 5) for _ in range(50)]
    opened = time.monotonic()
    for sock in stalled[:46]:
        sock.sendall(UPLOAD + b'{"model": "al')  # 13 of the 1000 bytes promised
    stalled[46].sendall(UPLOAD[:40])  # the headers never end
    stalled[47].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + UPLOAD[:40])  # one answered, the next stalls
    # stalled[48:] send nothing at all
    with concurrent.futures.ThreadPoolExecutor(len(stalled)) as pool:
        dropped = [pool.submit(_dropped_after, sock, opened) for sock in stalled]
        assert raw("GET", server.root + "/health")[0] == 200
        answered = time.monotonic() - opened
        body = {"model": "alpha", "messages": HELLO, "max_tokens": 2}
        assert raw("POST", server.url + "/chat/completions", body, key=KEY)[0] == 200
        waits = [f.result() for f in dropped]  # TimeoutError where the server kept one open
    assert answered < READ_TIMEOUT - 0.5 < min(waits) and max(waits) < READ_TIMEOUT + 3, (answered, waits)


def _dropped_after(sock: socket.socket, opened: float) -> float:
    """Seconds from ``opened`` until the server closed ``sock`` (read to the end, then closed)."""
    with sock:
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
    return time.monotonic() - opened


# --- d) what /health tells a stranger ------------------------------------------------------------


def test_health_names_models_only_to_a_caller_with_the_key(server, world):
    health = server.root + "/health"
    for key in (None, "wrong"):
        status, body = raw("GET", health, key=key)
        assert status == 200 and body == {"status": "ok", "counts": {"base": 1, "adapter": 1, "rag": 0}}, body
    status, body = raw("GET", health, key=KEY)
    assert status == 200 and body["models"] == sorted(["alpha", world["base"].name]) and body["counts"]["adapter"] == 1


def test_health_shows_why_loading_failed_only_to_a_caller_with_the_key(monkeypatch):
    from onthejob.serve import server as server_module

    def fail(*_args, **_kwargs):
        raise OSError("/secret/models/base: no such folder")

    monkeypatch.setattr(server_module.Scheduler, "load", fail)
    s = ServerThread(create_app(ServeConfig(model="/secret/models/base", api_key=KEY, feedback_db=None)))
    try:
        deadline = time.monotonic() + 10
        while raw("GET", s.root + "/health", key=KEY)[1]["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert raw("GET", s.root + "/health") == (503, {"status": "error"})
        status, body = raw("GET", s.root + "/health", key=KEY)
        assert status == 503 and "/secret/models/base" in body["error"], body
    finally:
        s.stop()


def _read_response(sock: socket.socket) -> tuple[int, dict | str]:
    """(status, parsed JSON or text) of the one response the server sends before closing."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, text = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text.decode()
