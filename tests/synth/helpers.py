"""Fake teachers and a fake OpenAI-compatible endpoint for the synth tests: no model is run."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANDBOOK = """# Leave

Staff receive 25 days of annual leave per calendar year. Leave not taken by 31 March is lost.

# Probation

New staff serve a probation period of 6 months. During probation the notice period is 2 weeks.

# Expenses

Claims above $500 need the approval of a director. Receipts must be kept for 7 years.

# Conduct

Staff must treat every visitor with courtesy and keep client information confidential at all times.
"""


def focus_of(messages: list[dict]) -> str:
    return re.search(r"Text: (.+?)\n", messages[-1]["content"]).group(1)


def faithful(messages: list[dict]) -> str:
    """A good teacher: asks about the focus sentence and answers with it."""
    focus = focus_of(messages)
    return f"Question: What does the policy say about {' '.join(focus.split()[:4]).lower()}?\nAnswer: {focus}"


class FakeTeacher:
    def __init__(self, reply=faithful, *, fail_after: int | None = None, identity: str = "fake"):
        self.reply, self.fail_after, self.identity = reply, fail_after, identity
        self.calls = 0

    def complete(self, prompts, done):
        for i, p in enumerate(prompts):
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt  # killed mid-run
            self.calls += 1
            done(i, self.reply(p))


class Endpoint:
    """An OpenAI-compatible server on loopback: ``mode`` "ok", "html" (not JSON), "flaky" (500
    twice, then ok) or "empty" (answers with no facts)."""

    def __init__(self, mode: str = "ok"):
        self.mode, self.requests = mode, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, body: str, kind: str = "application/json"):
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, json.dumps({"data": [{"id": "teacher-1"}]}))

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests += 1
                if outer.mode == "html":
                    return self._send(200, "<html>proxy login</html>", "text/html")
                if outer.mode == "flaky" and outer.requests <= 2:
                    return self._send(500, "busy")
                text = "Question: Is the office a nice place?\nAnswer: It is." if outer.mode == "empty" else faithful(body["messages"])
                self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}],
                                            "model": body["model"]}))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
