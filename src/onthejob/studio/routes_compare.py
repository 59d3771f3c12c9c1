"""The Compare and Review pages' API.

Compare starts ``ojt compare`` as a job on the questions picked (written to the job's folder as
``questions.jsonl``) and shows its report.json. Review takes answers from a compare report or
the playground: each judgement (good / bad, a corrected answer, a note, who and when) is kept
in the workspace database with data/feedback.py's store, the one ``ojt serve`` uses, and Save
turns them into training examples and preference pairs with ``ojt data from-feedback``'s code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

from onthejob.studio.routes_data import model_path

ARMS = ("prompt", "few-shot", "rag", "ft", "ft+rag")
MAX_QUESTIONS = 5000
REVIEWED, PAIRS = "datasets/reviewed.jsonl", "datasets/reviewed-pairs.jsonl"


class CompareBody(BaseModel):
    data: str
    lines: list[int] | None = Field(None, max_length=MAX_QUESTIONS)  # the questions picked; none = all
    arms: list[Literal[ARMS]] = Field(min_length=1, max_length=len(ARMS))
    run: str | None = None
    base: str | None = None
    rag: str | None = None
    max_new_tokens: int = Field(128, ge=1, le=4096)
    general: bool = False  # also score the general-skills probe (100 more questions per model)


class ReviewBody(BaseModel):
    source: str  # "compare:JOB" or "playground"
    arm: str | None = None  # compare only
    line: int | None = None  # compare only
    id: str | None = None  # playground: the answer's id
    rating: Literal["good", "bad"] | None = None
    correction: str | None = Field(None, max_length=100_000)
    note: str | None = Field(None, max_length=100_000)
    reviewer: str | None = Field(None, max_length=200)


def add_routes(app: FastAPI, studio) -> None:
    ws = studio.ws

    @app.get("/api/compare/questions")
    def questions(path: str):
        from onthejob.eval.data import read_eval

        items = read_eval(ws.path(path))[:MAX_QUESTIONS]
        return [{"line": i.line, "question": i.question, "reference": i.reference, "facts": i.facts} for i in items]

    @app.post("/api/compare")
    def compare(body: CompareBody):
        from onthejob.errors import ConfigError

        source = ws.path(body.data)
        lines = source.read_text(encoding="utf-8").splitlines()
        picked = sorted(set(body.lines)) if body.lines else [n for n in range(1, len(lines) + 1) if lines[n - 1].strip()]
        if any(n < 1 or n > len(lines) or not lines[n - 1].strip() for n in picked):
            raise ConfigError(f"{body.data}: a picked line is not a question", fix="pick questions from the list")
        needs_run = [a for a in body.arms if a in ("ft", "ft+rag")]
        if needs_run and not body.run:
            raise ConfigError(f"arms {', '.join(needs_run)} answer with a fine-tuned run", fix="pick a run")
        if any(a in ("rag", "ft+rag") for a in body.arms) and not body.rag:
            raise ConfigError("the RAG arms answer from a collection", fix="pick a collection (Documents page)")
        argv = ["compare", "--data", "{job}/questions.jsonl", "--arms", ",".join(body.arms), "--out", "{job}/report",
                "--max-new-tokens", str(body.max_new_tokens), "--general", "builtin" if body.general else "none"]
        if body.run:
            argv += ["--run", str(_run(studio, body.run))]
        if body.base:
            argv += ["--base", model_path(studio, body.base)]
        if body.rag:
            argv += ["--rag", body.rag, "--rag-store", ws.rag_store]
        text = "".join(lines[n - 1] + "\n" for n in picked)
        return studio.jobs.submit("compare", argv, title=f"compare {', '.join(body.arms)} on {len(picked)} questions",
                                  meta={"data": body.data, "run": body.run, "questions": len(picked)},
                                  files={"questions.jsonl": text})

    @app.get("/api/compare/{job_id}")
    def report(job_id: str):
        job = studio.jobs.get(job_id)
        path = studio.jobs.folder(job_id) / "report" / "report.json"
        doc = json.loads(path.read_text()) if path.is_file() else None
        return {"job": job, "report": doc, "html": f"jobs/{job_id}/report/report.html" if doc else None}

    @app.get("/api/review/items")
    def items(source: str):
        store = _store(studio)
        if source == "playground":
            return [_playground_item(a) for a in store.recent(prefix="pg-")]
        job_id = _compare_job(source)
        doc = report(job_id)["report"]
        if doc is None:
            raise KeyError(f"{job_id} has no report yet")
        out = []
        for m in doc["models"]:
            for ex in m["per_example"]:
                answer_id = _compare_id(job_id, m["label"], ex["line"])
                recorded = store.answer(answer_id)
                out.append({"id": answer_id, "source": source, "arm": m["label"], "label": m["label"], "line": ex["line"],
                            "question": ex.get("question", ""), "reference": ex.get("reference", ""),
                            "answer": ex.get("answer", ""), "feedback": store.feedback(answer_id) if recorded else []})
        return out

    @app.post("/api/review")
    def review(body: ReviewBody):
        store = _store(studio)
        if body.source == "playground":
            if not body.id or not body.id.startswith("pg-"):
                raise ValueError("a playground review needs the answer's id")
            answer_id = body.id
        else:
            answer_id = _record_compare_answer(studio, store, body)
        return store.add_feedback(answer_id, rating=body.rating, correction=body.correction, note=body.note,
                                  reviewer=body.reviewer)

    @app.post("/api/review/save")
    def save():
        from onthejob.data.feedback import from_feedback

        counts = from_feedback(ws.db, ws.root / REVIEWED, ws.root / PAIRS)
        return {**counts, "examples_path": REVIEWED, "pairs_path": PAIRS}


def _store(studio):
    from onthejob.data.feedback import FeedbackStore

    return FeedbackStore(studio.ws.db)


def _run(studio, name: str) -> Path:
    run = studio.ws.run_dir(name)
    if not (run / "run.json").is_file():
        raise KeyError(f"run {name}")
    return run


def _compare_job(source: str) -> str:
    kind, _, job_id = source.partition(":")
    if kind != "compare" or not job_id:
        raise ValueError(f"source {source!r}: use compare:JOB or playground")
    return job_id


def _compare_id(job_id: str, arm: str, line: int) -> str:
    """``cmp-JOB-ARM-LINE``, the arm as its label reads (prompting, fine-tuning-rag, ...)."""
    return f"cmp-{job_id}-{re.sub(r'[^a-z0-9]+', '-', arm.lower()).strip('-')}-{line}"


def _record_compare_answer(studio, store, body: ReviewBody) -> str:
    """Keep the compare answer under review in the store (once), with the conversation it
    answered as the questions file holds it, so a correction becomes an example of it."""
    from onthejob.eval.data import read_eval

    job_id = _compare_job(body.source)
    if body.arm is None or body.line is None:
        raise ValueError("a compare review names the arm and the question's line")
    answer_id = _compare_id(job_id, body.arm, body.line)
    if store.answer(answer_id) is not None:
        return answer_id
    doc = json.loads((studio.jobs.folder(job_id) / "report" / "report.json").read_text())
    model = next((m for m in doc["models"] if m["label"] == body.arm), None)
    ex = next((e for e in (model or {}).get("per_example", []) if e.get("line") == body.line), None)
    item = next((i for i in read_eval(studio.jobs.folder(job_id) / "questions.jsonl") if i.line == body.line), None)
    if ex is None or item is None:
        raise KeyError(f"{body.arm} answer to line {body.line}")
    store.record_answer(answer_id, model=body.arm, messages=item.messages, tools=None,
                        answer={"role": "assistant", "content": ex.get("answer", "")},
                        request={"source": body.source, "arm": body.arm, "line": body.line})
    return answer_id


def _playground_item(answer: dict) -> dict:
    users = [m for m in answer["messages"] if m.get("role") == "user"]
    return {"id": answer["response_id"], "source": "playground", "arm": answer["model"], "label": answer["model"],
            "line": None, "question": str(users[-1].get("content", "")) if users else "", "reference": "",
            "answer": answer["answer"].get("content", ""), "feedback": answer["feedback"]}
