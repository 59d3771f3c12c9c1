"""Measure retrieval: hit@k, MRR, nDCG@10 and latency, for dense, sparse and hybrid search.

    ojt rag eval hr --data questions.jsonl --out-json eval.json --out-md eval.md

Each line of the data file is ``{"question": ..., "relevant": [...], "reference": ...}``.
``relevant`` items say which chunks answer the question, each of grade 1 unless it says otherwise:
- ``"HR_Policy.pdf"``: every chunk of that document (matched by path, file name or path suffix);
- ``"HR_Policy.pdf#page=3"``: the chunks of page 3 of it;
- any other string: a passage, matched to chunks by text overlap (below);
- ``{"doc": "HR_Policy.pdf", "page": 3, "grade": 2}`` or ``{"text": "...", "grade": 3}`` (grades 0-3).
Without ``relevant``, ``reference`` (the expected answer) is used as a passage of grade 1.

Text overlap: both texts become sets of word trigrams (lowercase letters and digits; texts under
three words use single words). A chunk matches a passage when at least half of the chunk's
trigrams occur in the passage (the chunk lies inside it) or at least half of the passage's occur
in the chunk (the passage lies inside the chunk). Trigrams rather than words because a long
passage contains most common words of any chunk; trigrams are robust to the hyphenation, spacing
and line-break differences between two extractions of the same PDF.

Metrics, per mode, averaged over questions with at least one relevant chunk in the collection
(others are counted as ``unjudged``): hit@k = 1 if a relevant chunk is in the top k; MRR = 1/rank
of the first relevant chunk in the top 10, else 0; nDCG@10 with gain = grade and discount
1/log2(rank + 1), divided by the same for the best possible order of the relevant chunks.
Latency is per question: query embedding (dense, hybrid) plus the store's search.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onthejob.data.readers import jsonl_records
from onthejob.data.schema import Problem
from onthejob.errors import DataError
from onthejob.rag.embed import Embedder, cached_embedder
from onthejob.rag.store import Chunk, Store
from onthejob.rag.stores import open_store

KS = (1, 3, 5, 10)
MODES = ("dense", "sparse", "hybrid")
MATCH = 0.5  # share of trigrams that must be shared, see the module docstring


@dataclass
class Question:
    question: str
    relevant: list[dict[str, Any]]  # [{"doc"|"text": ..., "page"?: int, "grade": int}]
    where: str  # file:line


@dataclass
class EvalReport:
    collection: str
    questions: int
    unjudged: int
    summary: dict[str, dict[str, float]]  # mode -> metric -> value
    details: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"collection": self.collection, "questions": self.questions, "unjudged": self.unjudged,
                "summary": self.summary, "details": self.details}

    def markdown(self) -> str:
        metrics = [f"hit@{k}" for k in KS] + ["mrr", "ndcg@10", "p50_ms", "p95_ms"]
        lines = [f"# Retrieval on `{self.collection}`", "",
                 f"{self.questions - self.unjudged} judged questions ({self.unjudged} without a relevant chunk left out).", "",
                 "| mode | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for mode, row in self.summary.items():
            cells = [f"{row.get(m, 0.0):.0f}" if m.endswith("_ms") else f"{row.get(m, 0.0):.3f}" for m in metrics]
            lines.append(f"| {mode} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- metrics


def hit_at_k(grades: Sequence[float], k: int) -> float:
    """``grades``: relevance of the retrieved chunks in rank order (0 = not relevant)."""
    return 1.0 if any(g > 0 for g in grades[:k]) else 0.0


def reciprocal_rank(grades: Sequence[float], k: int = 10) -> float:
    for rank, g in enumerate(grades[:k], start=1):
        if g > 0:
            return 1.0 / rank
    return 0.0


def dcg(grades: Sequence[float], k: int) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(grades[:k], start=1))


def ndcg_at_k(grades: Sequence[float], all_relevant: Sequence[float], k: int = 10) -> float:
    """``all_relevant``: the grades of every relevant chunk in the collection (the ideal ranking)."""
    ideal = dcg(sorted(all_relevant, reverse=True), k)
    return dcg(grades, k) / ideal if ideal > 0 else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return 0.0
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# ---------------------------------------------------------------------------------- relevance


def shingles(text: str, n: int = 3) -> set:
    words = re.findall(r"[a-z0-9]+", text.lower())
    if len(words) < n:
        return set(words)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def overlaps(chunk: set, passage: set, share: float = MATCH) -> bool:
    """True when either text lies mostly inside the other (shares of their shingle sets)."""
    if not chunk or not passage:
        return False
    common = len(chunk & passage)
    return common >= share * len(chunk) or common >= share * len(passage)


def grade(chunk: Chunk, relevant: list[dict[str, Any]], chunk_shingles: set) -> int:
    """The highest grade among the ``relevant`` items that match ``chunk`` (0: none)."""
    best = 0
    for item in relevant:
        if "doc" in item:
            ok = _same_doc(chunk.doc, item["doc"]) and item.get("page") in (None, chunk.meta.get("page"))
        else:
            ok = overlaps(chunk_shingles, item["shingles"])
        if ok:
            best = max(best, item["grade"])
    return best


def _same_doc(doc: str, name: str) -> bool:
    return doc == name or Path(doc).name == name or doc.endswith("/" + name.lstrip("/"))


# ---------------------------------------------------------------------------------- run


def read_questions(path: str | Path, docs: Sequence[str]) -> list[Question]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file", fix="give a JSONL file of {\"question\", \"relevant\"} records")
    out = []
    for i, record in jsonl_records(path.read_text(encoding="utf-8"), str(path)):
        where = f"{path}:{i}"
        if isinstance(record, Problem):
            raise DataError(f"{where}: not valid JSON ({record.message.removeprefix('invalid JSON: ')})",
                            fix="one JSON object per line")
        if not isinstance(record, dict) or not isinstance(record.get("question"), str):
            raise DataError(f"{where}: no \"question\" string", fix='write {"question": "...", "relevant": [...]}')
        items = record.get("relevant") or ([record["reference"]] if record.get("reference") else [])
        if not items:
            raise DataError(f"{where}: neither \"relevant\" nor \"reference\"", fix="say which passages or documents answer it")
        out.append(Question(record["question"], [_relevant_item(x, docs, where) for x in items], where))
    return out


def _relevant_item(item: Any, docs: Sequence[str], where: str) -> dict[str, Any]:
    if isinstance(item, str):
        name, _, page = item.partition("#page=")
        if any(_same_doc(d, name) for d in docs) and (not page or page.isdigit()):
            return {"doc": name, "page": int(page) if page else None, "grade": 1}
        return {"text": item, "shingles": shingles(item), "grade": 1}
    if isinstance(item, dict) and ("doc" in item or "text" in item):
        g = item.get("grade", 1)
        if not isinstance(g, int) or not 0 <= g <= 3:
            raise DataError(f"{where}: grade {g!r}", fix="use an integer from 0 to 3")
        if "doc" in item:
            return {"doc": str(item["doc"]), "page": item.get("page"), "grade": g}
        return {"text": item["text"], "shingles": shingles(str(item["text"])), "grade": g}
    raise DataError(f"{where}: relevant item {item!r}", fix='use a string, {"doc": ..., "grade": n} or {"text": ..., "grade": n}')


def evaluate(
    collection: str,
    data: str | Path,
    *,
    store: Store | None = None,
    embedder: Embedder | None = None,
    modes: Sequence[str] = MODES,
    candidates: int = 50,
) -> EvalReport:
    """Run every question in every mode; see the module docstring for the metrics. Without
    ``store``, the default one is opened and closed again."""
    with (nullcontext(store) if store is not None else open_store()) as store:
        info = store.info(collection)
        embedder = embedder or cached_embedder(info.embed_model)
        chunks = [c for doc in store.documents(collection) for c in store.doc_chunks(collection, doc)]
        questions = read_questions(data, sorted({c.doc for c in chunks}))
        return _run(collection, store, embedder, chunks, questions, modes, candidates)


def _run(collection, store, embedder, chunks, questions, modes, candidates) -> EvalReport:
    from onthejob.rag.answer import check_model

    check_model(collection, store.info(collection).embed_model, embedder)
    chunk_sh = {c.id: shingles(c.text) for c in chunks}
    embedder.encode(["warm-up"])  # the first call pays for loading; it is not a query's latency
    per_mode: dict[str, dict[str, list[float]]] = {m: {} for m in modes}
    details, unjudged = [], 0
    for q in questions:
        judged = {c.id: g for c in chunks if (g := grade(c, q.relevant, chunk_sh[c.id])) > 0}
        if not judged:
            unjudged += 1
            details.append({"question": q.question, "where": q.where, "relevant_chunks": 0})
            continue
        t = time.perf_counter()
        vector = embedder.encode([q.question])[0]
        embed_s = time.perf_counter() - t
        row = {"question": q.question, "where": q.where, "relevant_chunks": len(judged)}
        for mode in modes:
            t = time.perf_counter()
            hits = store.search(collection, vector, q.question, k=max(KS), mode=mode, candidates=candidates)
            seconds = time.perf_counter() - t + (embed_s if mode != "sparse" else 0.0)
            grades = [judged.get(h.chunk.id, 0) for h in hits]
            scores = _scores(grades, list(judged.values()), seconds)
            for name, value in scores.items():
                per_mode[mode].setdefault(name, []).append(value)
            row[mode] = {"ranked": [h.chunk.id for h in hits], "grades": grades, **scores}
        details.append(row)
    summary = {mode: _summary(values) for mode, values in per_mode.items()}
    return EvalReport(collection, len(questions), unjudged, summary, details)


def _scores(grades: list[int], all_relevant: list[int], seconds: float) -> dict[str, float]:
    out = {f"hit@{k}": hit_at_k(grades, k) for k in KS}
    out["mrr"] = reciprocal_rank(grades, 10)
    out["ndcg@10"] = ndcg_at_k(grades, all_relevant, 10)
    out["ms"] = seconds * 1000
    return out


def _summary(values: dict[str, list[float]]) -> dict[str, float]:
    out = {name: sum(v) / len(v) for name, v in values.items() if name != "ms" and v}
    ms = values.get("ms", [])
    out["p50_ms"], out["p95_ms"] = percentile(ms, 0.5), percentile(ms, 0.95)
    return out


def write_report(report: EvalReport, out_json: str | Path | None = None, out_md: str | Path | None = None) -> None:
    from onthejob.fsutil import write_json, write_text

    if out_json:
        write_json(out_json, report.to_json())
    if out_md:
        write_text(out_md, report.markdown())
