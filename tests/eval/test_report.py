"""write_reports: three files, a self-contained HTML page, escaping, byte-identical reruns."""

from __future__ import annotations

import json
import re

from onthejob.eval.report import write_reports
from onthejob.eval.run import ModelEval

METRICS = ["exact_match", "token_f1", "rouge_l", "facts_recall", "answer_tokens", "stopped", "latency_s"]


def fake_eval(label: str, answers: list[str], shift: float = 0.0) -> ModelEval:
    rows = []
    for i, answer in enumerate(answers, start=1):
        rows.append({"line": i, "question": f"question {i} <b>bold</b>?", "reference": f"reference {i}", "answer": answer,
                     "facts": [f"fact {i}"], "exact_match": 0.0, "token_f1": 0.2 + shift, "rouge_l": 0.3 + shift,
                     "facts_recall": float(i % 2), "format_valid": None, "answer_tokens": 10.0 + i, "stopped": 1.0,
                     "latency_s": 0.1 * i + shift, "tokens_per_s": 50.0})
    aggregates = {m: {"mean": 0.4 + shift, "low": 0.3 + shift, "high": 0.5 + shift, "n": len(rows)} for m in METRICS}
    aggregates["format_valid"] = {"mean": None, "low": None, "high": None, "n": 0}
    return ModelEval(label, label, rows, aggregates, loss=1.5 - shift, perplexity=4.4, seconds=3.0)


def write(out, **kw):
    evals = [fake_eval("prompting", ["plain answer", "<script>alert('x')</script>", "a & b"]),
             fake_eval("fine-tuning", ["tuned one", "tuned two", "tuned three"], shift=0.2)]
    comparisons = [{"a": "fine-tuning", "b": "prompting", "metric": "facts_recall", "diff": 0.2, "low": 0.05,
                    "high": 0.35, "p_value": 0.01, "significant": True, "n": 3}]
    leaks = [{"eval_line": 2, "kind": "exact", "score": 1.0, "train": "train.jsonl:7"}]
    return write_reports(evals, out, title="HR <demo>", verdict="fine-tuning answers 2 of 3 correctly", comparisons=comparisons,
                         leaks=leaks, **kw)


def test_writes_three_files_with_the_figures(tmp_path):
    paths = write(tmp_path / "r")
    assert {p.name for p in paths.values()} == {"report.json", "report.md", "report.html"}
    doc = json.loads(paths["json"].read_text())
    assert [m["label"] for m in doc["models"]] == ["prompting", "fine-tuning"]
    assert doc["primary"] == "facts_recall"
    assert "format_valid" not in doc["metrics"]  # nothing scored it
    assert doc["leaks"][0]["line"] == 2
    md = paths["md"].read_text()
    assert "| prompting | 0.400 [0.300, 0.500]" in md
    assert "fine-tuning vs prompting" in md and "significant" in md
    assert "&lt;script>" in md  # answers cannot inject HTML through a Markdown renderer


def test_html_is_self_contained_and_escaped(tmp_path):
    page = write(tmp_path / "r")["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "<script" not in page  # no external CSS, and the answer's script is text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "a &amp; b" in page and "HR &lt;demo&gt;" in page
    assert page.count("<svg") == 2  # quality bars and latency
    assert page.count("<table") >= 4  # summary, comparisons, leakage, every question
    summary = page.split('<table class="summary">')[1].split("</table>")[0]
    assert summary.count("<tr>") == 3  # header + one row per arm
    for label in ("prompting", "fine-tuning"):
        assert f"<th>{label}</th>" in page  # a column per arm in the per-question table
    assert "fact 2" in page  # the question's facts


def test_same_inputs_give_identical_bytes(tmp_path):
    a = write(tmp_path / "a")
    b = write(tmp_path / "b")
    for kind in ("json", "md", "html"):
        assert a[kind].read_bytes() == b[kind].read_bytes(), kind


def test_extra_tables_and_missing_values(tmp_path):
    table = {"title": "Without leaked questions", "columns": ["arm", "mean"], "rows": [["prompting", 0.5], ["ft", None]]}
    e = fake_eval("solo", ["x"])
    e.loss = e.perplexity = None
    e.aggregates["token_f1"] = {"mean": float("nan"), "low": None, "high": None, "n": 0}
    paths = write_reports([e], tmp_path, title="t", tables=[table])
    assert "Without leaked questions" in paths["html"].read_text()
    doc = json.loads(paths["json"].read_text())  # NaN became null: strict JSON
    assert doc["models"][0]["aggregates"]["token_f1"]["mean"] is None
    assert "| ft | – |" in paths["md"].read_text()
