"""The judge against a fake OpenAI-compatible endpoint on loopback that replays canned replies."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from onthejob.errors import ConfigError, ModelError
from onthejob.eval.data import EvalItem
from onthejob.eval.judge import judge, parse_reply


class FakeJudge(BaseHTTPRequestHandler):
    replies: ClassVar[list[str]] = []
    requests: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, **body})
        content = self.replies[len(self.requests) - 1]
        data = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def endpoint():
    FakeJudge.requests = []
    server = HTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


ITEMS = [EvalItem(n, [{"role": "user", "content": f"question {n}"}], f"reference {n}") for n in (3, 5, 8)]


def test_judge_scores_each_answer(endpoint):
    FakeJudge.replies = ['{"score": 4, "reason": "close"}',
                         'Sure! ```json\n{"score": 2, "reason": "wrong number"}\n```',
                         "I cannot grade this."]
    grades = judge(ITEMS, ["a3", "a5", "a8"], base_url=endpoint, model="grader", api_key="k")
    assert grades[:2] == [{"line": 3, "score": 4, "reason": "close"}, {"line": 5, "score": 2, "reason": "wrong number"}]
    assert grades[2]["line"] == 8 and grades[2]["score"] is None and "I cannot grade" in grades[2]["reason"]
    first = FakeJudge.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["model"] == "grader" and first["temperature"] == 0
    prompt = first["messages"][0]["content"]
    assert "question 3" in prompt and "reference 3" in prompt and "a3" in prompt and "Rubric" in prompt


def test_rubric_and_prompt_from_files(endpoint, tmp_path):
    FakeJudge.replies = ['{"score": 5, "reason": "ok"}']
    (tmp_path / "rubric.txt").write_text("5 if it rhymes", encoding="utf-8")
    (tmp_path / "prompt.txt").write_text("R={rubric} Q={question} REF={reference} A={answer}", encoding="utf-8")
    judge(ITEMS[:1], ["moon"], base_url=endpoint, model="m", rubric=tmp_path / "rubric.txt",
          prompt=str(tmp_path / "prompt.txt"))
    assert FakeJudge.requests[0]["messages"][0]["content"] == "R=5 if it rhymes Q=question 3 REF=reference 3 A=moon"
    with pytest.raises(ConfigError, match="lacks"):
        judge(ITEMS[:1], ["x"], base_url=endpoint, model="m", prompt="no fields here")


def test_unreachable_judge_is_a_model_error():
    with pytest.raises(ModelError, match="cannot reach the judge"):
        judge(ITEMS[:1], ["x"], base_url="http://127.0.0.1:9/v1", model="m")


@pytest.mark.parametrize("reply, expected", [
    ('{"score": 3, "reason": "half"}', (3, "half")),
    ('{"score": 7, "reason": "?"}', (None, None)),
    ("Score: 5 - perfect", (5, "Score: 5 - perfect")),
    ("", (None, None)),
])
def test_parse_reply(reply, expected):
    score, reason = parse_reply(reply)
    assert score == expected[0]
    if expected[1] is not None:
        assert reason == expected[1]
