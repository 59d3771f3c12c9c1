"""The judge against a fake OpenAI-compatible endpoint on loopback that replays canned replies."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from onthejob.errors import ConfigError, ModelError
from onthejob.eval.data import EvalItem
from onthejob.eval.judge import RUBRIC, agreement, agreement_sentence, judge, parse_reply


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


def test_judge_grades_each_answer_on_the_rubric(endpoint):
    FakeJudge.replies = ['{"grade": "correct", "reason": "same amount"}',
                         'Sure! ```json\n{"grade": "Partly", "reason": "wrong notice period"}\n```',
                         "I cannot grade this."]
    grades = judge(ITEMS, ["a3", "a5", "a8"], base_url=endpoint, model="grader", api_key="k")
    assert grades[:2] == [{"line": 3, "grade": "correct", "score": 1.0, "reason": "same amount"},
                          {"line": 5, "grade": "partly", "score": 0.5, "reason": "wrong notice period"}]
    assert grades[2]["line"] == 8 and grades[2]["grade"] is None and grades[2]["score"] is None
    assert "I cannot grade" in grades[2]["reason"]  # one bad reply loses no other grade
    first = FakeJudge.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["model"] == "grader" and first["temperature"] == 0
    prompt = first["messages"][0]["content"]
    assert "question 3" in prompt and "reference 3" in prompt and "a3" in prompt and RUBRIC in prompt


def test_prompt_from_a_file(endpoint, tmp_path):
    FakeJudge.replies = ['{"grade": "wrong", "reason": "no"}']
    (tmp_path / "prompt.txt").write_text("R={rubric} Q={question} REF={reference} A={answer}", encoding="utf-8")
    judge(ITEMS[:1], ["moon"], base_url=endpoint, model="m", prompt=str(tmp_path / "prompt.txt"))
    assert FakeJudge.requests[0]["messages"][0]["content"] == f"R={RUBRIC} Q=question 3 REF=reference 3 A=moon"
    with pytest.raises(ConfigError, match="lacks"):
        judge(ITEMS[:1], ["x"], base_url=endpoint, model="m", prompt="no fields here")


def test_unreachable_judge_is_a_model_error():
    with pytest.raises(ModelError, match="cannot reach the judge"):
        judge(ITEMS[:1], ["x"], base_url="http://127.0.0.1:9/v1", model="m")


@pytest.mark.parametrize("reply, expected", [
    ('{"grade": "refused", "reason": "it declined"}', ("refused", "it declined")),
    ('{"grade": "excellent", "reason": "?"}', (None, None)),  # not a grade of the rubric
    ('{"score": 5}', (None, None)),  # the old 1-5 scale is no grade
    ('Thinking {"a": 1} then {"grade": "wrong", "reason": "x"}', ("wrong", "x")),  # the first object with a grade
    ("Grade: partly - the main point is right", ("partly", "Grade: partly - the main point is right")),
    ("", (None, None)),
    ('I cannot. Reply with JSON only: {"grade": "correct" | "partly" | "wrong" | "refused", "reason": "<one sentence>"}',
     (None, None)),  # a small judge echoing the format line gave no grade
])
def test_parse_reply(reply, expected):
    grade, reason = parse_reply(reply)
    assert grade == expected[0]
    if expected[1] is not None:
        assert reason == expected[1]


def test_agreement_shows_where_the_facts_are_too_strict():
    rows = [{"line": 1, "judge": "correct", "facts_recall": 1.0},
            {"line": 2, "judge": "correct", "facts_recall": 0.0},  # facts too strict
            {"line": 3, "judge": "wrong", "facts_recall": 1.0},  # the judge stricter
            {"line": 4, "judge": "partly", "facts_recall": 0.5},
            {"line": 5, "judge": None, "facts_recall": 1.0},  # no grade: not counted
            {"line": 6, "judge": "correct", "facts_recall": None}]  # no facts: not counted
    a = agreement(rows)
    assert a == {"n": 4, "agree": 2, "judge_only": [2], "facts_only": [3]}
    assert agreement_sentence("fine-tuning", a) == (
        "fine-tuning: judge and facts agree on 2 of 4 answers; the judge credits 1 the facts miss "
        "(facts too strict? lines 2); the facts credit 1 the judge does not (lines 3).")
    assert agreement([{"line": 1, "judge": "correct"}]) is None
