"""The Playground page's API: one conversation answered by the base model and by a run, each
streamed, optionally from a collection's passages (with the passages it cites).

Answers come from the same engine ``ojt chat`` uses (generate/engine.py), loaded in the studio
on first use and kept for the next turn (the last few models). Every answer is kept in the
workspace database under an id ``pg-...``, so the Review page can judge it.
"""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path
from collections import OrderedDict
from typing import Literal

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from onthejob.studio.routes_data import model_path

KEEP_ENGINES = 3  # models kept loaded
MAX_MESSAGES = 200


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)


class ChatBody(BaseModel):
    side: Literal["base", "tuned"]
    run: str | None = None  # tuned: this run; base: its base model
    model: str | None = None  # base without a run: this model (default: the default model)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: str | None = Field(None, max_length=10_000)
    rag: str | None = None  # a collection of the workspace
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1, le=4096)


class Engines:
    """The models the playground answers with, loaded once each, one answer at a time each."""

    def __init__(self):
        self._engines: OrderedDict[str, tuple] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str):
        from onthejob.generate.engine import load_engine

        with self._lock:
            if name not in self._engines:
                engine, loaded = load_engine(name)
                self._engines[name] = (engine, loaded, threading.Lock())
                while len(self._engines) > KEEP_ENGINES:
                    self._engines.popitem(last=False)
            self._engines.move_to_end(name)
            return self._engines[name]


def add_routes(app: FastAPI, studio) -> None:
    engines = Engines()

    @app.post("/api/chat")
    def chat(body: ChatBody):
        from onthejob.generate.sampling import SamplingParams

        name, label = _model(studio, body)
        engine, loaded, lock = engines.get(name)
        history = [m.model_dump() for m in body.messages if m.role != "system"]
        system = body.system if body.system is not None else loaded.system_prompt
        if system:
            history.insert(0, {"role": "system", "content": system})
        params = SamplingParams(max_new_tokens=body.max_new_tokens, temperature=body.temperature, top_p=body.top_p)
        retriever = _retriever(studio, body.rag)
        return StreamingResponse(_answer(studio, engine, lock, history, params, retriever, label), media_type="application/x-ndjson")


def _model(studio, body: ChatBody) -> tuple[str, str]:
    from onthejob.models.registry import DEFAULT_MODEL

    if body.run:
        run = studio.ws.run_dir(body.run)
        info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else None
        if info is None:
            raise KeyError(f"run {body.run}")
        if body.side == "tuned":
            return str(run), f"tuned:{body.run}"
        return str(info.get("base_model") or DEFAULT_MODEL), "base"
    if body.side == "tuned":
        raise ValueError("the tuned side needs a run")
    return model_path(studio, body.model or DEFAULT_MODEL), "base"


def _retriever(studio, collection: str | None):
    if not collection:
        return None
    from onthejob.rag.answer import Retriever
    from onthejob.rag.config import RetrievalConfig

    return Retriever(RetrievalConfig(collection=collection, store=studio.ws.rag_store))


def _answer(studio, engine, lock, history, params, retriever, label):
    """NDJSON lines: ``{"delta": text}`` as the answer is written, then ``{"done": true, "id",
    "sources"}``; an error ends the stream with ``{"error": "..."}``."""
    from onthejob.data.feedback import FeedbackStore
    from onthejob.errors import OjtError
    from onthejob.rag.answer import NOT_COVERED, cited

    try:
        prompt, sources = (history, [])
        if retriever is not None:
            with retriever:
                prompt, sources = retriever.prepare(history)
        parts = []
        if prompt is None:
            parts.append(NOT_COVERED)
            yield json.dumps({"delta": NOT_COVERED}) + "\n"
        else:
            with lock:
                for delta in engine.stream(prompt, params):
                    parts.append(delta)
                    yield json.dumps({"delta": delta}) + "\n"
        text = "".join(parts)
        answer_id = f"pg-{secrets.token_hex(8)}"
        FeedbackStore(studio.ws.db).record_answer(answer_id, model=label, messages=history, tools=None,
                                                  answer={"role": "assistant", "content": text},
                                                  request={"source": "playground", "rag": bool(sources)})
        used = [{**s, "doc": _shown(studio, s.get("doc"))} for s in ((cited(text, sources) or sources) if sources else [])]
        yield json.dumps({"done": True, "id": answer_id, "sources": used}) + "\n"
    except OjtError as e:
        yield json.dumps({"error": str(e)}) + "\n"


def _shown(studio, doc):
    """A passage's document as the workspace names it (uploads/handbook.md), not the server's path."""
    try:
        return studio.ws.rel(Path(doc)) if doc else doc
    except ValueError:
        return doc
