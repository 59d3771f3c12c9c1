"""Retrieval metrics against hand-computed values, relevance matching, and one end-to-end run."""

from __future__ import annotations

import json
import math

import pytest

from onthejob.errors import DataError
from onthejob.rag.evaluate import (evaluate, hit_at_k, ndcg_at_k, overlaps, percentile, read_questions,
                                   reciprocal_rank, shingles, write_report)
from onthejob.rag.index import index
from tests.rag.helpers import FakeEmbedder

# Retrieved in rank order: not relevant, grade 1, not relevant, grade 2. The collection holds three
# relevant chunks, of grades 2, 1 and 1.
RANKED = [0, 1, 0, 2]
ALL_RELEVANT = [1, 2, 1]


def test_hit_at_k():
    assert [hit_at_k(RANKED, k) for k in (1, 2, 3, 5, 10)] == [0, 1, 1, 1, 1]
    assert hit_at_k([0, 0, 0], 10) == 0


def test_reciprocal_rank():
    assert reciprocal_rank(RANKED) == 0.5
    assert reciprocal_rank([0, 0, 0, 3]) == 0.25
    assert reciprocal_rank([0] * 10 + [1]) == 0  # beyond the top 10


def test_ndcg_at_10_by_hand():
    dcg = 1 / math.log2(3) + 2 / math.log2(5)  # ranks 2 and 4: 0.6309 + 0.8614 = 1.4923
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # 2 + 0.6309 + 0.5 = 3.1309
    assert ndcg_at_k(RANKED, ALL_RELEVANT, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(RANKED, ALL_RELEVANT, 10) == pytest.approx(0.47663, abs=1e-5)
    assert ndcg_at_k([2, 1, 1], ALL_RELEVANT, 10) == pytest.approx(1.0)
    assert ndcg_at_k([0, 0], ALL_RELEVANT, 10) == 0.0


def test_percentile_interpolates():
    assert percentile([10, 20, 30, 40], 0.5) == 25
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21], 0.95) == 20


def test_text_overlap_matches_a_chunk_inside_a_passage_and_a_passage_inside_a_chunk():
    passage = shingles("3.1 The employment of staff who are on probation may at any time be terminated by either "
                       "party. 3.2 Confirmed staff give one month of notice. 3.3 Notice may be waived by HR.")
    inside = shingles("Confirmed  staff give one\nmonth of notice. 3.3 Notice may be waived")  # spacing differs
    elsewhere = shingles("The staff may apply for annual leave of 18 days, subject to approval by HR.")
    assert overlaps(inside, passage)
    assert overlaps(passage, inside)  # either way round
    assert not overlaps(elsewhere, passage)


def test_questions_file_forms(tmp_path):
    f = tmp_path / "q.jsonl"
    lines = [
        {"question": "a?", "relevant": ["HR_Policy.pdf"]},
        {"question": "b?", "relevant": ["HR_Policy.pdf#page=3", {"doc": "other.md", "grade": 2}]},
        {"question": "c?", "relevant": ["Some passage text.", {"text": "More text.", "grade": 3}]},
        {"question": "d?", "reference": "Eighteen days."},
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    qs = read_questions(f, ["/data/HR_Policy.pdf", "/data/other.md"])
    assert qs[0].relevant == [{"doc": "HR_Policy.pdf", "page": None, "grade": 1}]
    assert qs[1].relevant == [{"doc": "HR_Policy.pdf", "page": 3, "grade": 1}, {"doc": "other.md", "page": None, "grade": 2}]
    assert [(r["text"], r["grade"]) for r in qs[2].relevant] == [("Some passage text.", 1), ("More text.", 3)]
    assert qs[3].relevant[0]["text"] == "Eighteen days."
    f.write_text(json.dumps({"question": "x", "relevant": [{"text": "t", "grade": 5}]}) + "\n")
    with pytest.raises(DataError, match=r"q\.jsonl:1: grade 5"):
        read_questions(f, [])


def test_questions_may_hold_a_line_separator(tmp_path):
    # U+2028 is legal inside a JSON string; str.splitlines() would cut the record in two there.
    f = tmp_path / "q.jsonl"
    lines = [{"question": "How many\u2028days?", "relevant": ["Staff get\u2028eighteen days."]}, {"question": "b?", "reference": "x"}]
    f.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    qs = read_questions(f, [])
    assert [(q.question, q.where) for q in qs] == [("How many\u2028days?", f"{f}:1"), ("b?", f"{f}:2")]
    assert qs[0].relevant[0]["text"] == "Staff get\u2028eighteen days."
    f.write_text('{"question": "a?", "reference": "x"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"q\.jsonl:2: not valid JSON"):
        read_questions(f, [])


def test_evaluate_end_to_end_writes_json_and_markdown(tmp_path, monkeypatch):
    monkeypatch.setenv("ONTHEJOB_HOME", str(tmp_path / "home"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nStaff get 18 days of annual leave each year.\n")
    (docs / "pay.md").write_text("# Pay\n\nSalaries are paid monthly on the 25th day.\n")
    (docs / "travel.md").write_text("# Travel\n\nStaff fly economy class on short flights.\n")
    emb = FakeEmbedder()
    index([docs], "hr", embedder=emb, progress=False)
    data = tmp_path / "q.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in [
        {"question": "How many days of annual leave?", "relevant": ["leave.md"]},
        {"question": "When are salaries paid?", "relevant": ["Salaries are paid monthly on the 25th day."]},
        {"question": "Unjudged?", "relevant": ["nothing like this text is in any document at all"]},
    ]) + "\n")
    report = evaluate("hr", data, embedder=emb)
    assert (report.questions, report.unjudged) == (3, 1)
    for mode in ("dense", "sparse", "hybrid"):
        assert report.summary[mode]["hit@1"] == 1.0 and report.summary[mode]["mrr"] == 1.0
    write_report(report, tmp_path / "out.json", tmp_path / "out.md")
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["summary"]["hybrid"]["ndcg@10"] == 1.0
    assert saved["details"][0]["sparse"]["ranked"][0].endswith("leave.md#0")
    assert "| hybrid | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 |" in (tmp_path / "out.md").read_text()
