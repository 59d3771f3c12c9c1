"""Answer from documents: retrieve passages, put them in the prompt, cite them.

    from onthejob.rag.answer import answer
    reply = answer(engine, "hr", [{"role": "user", "content": "How many days of annual leave?"}])
    reply.text, reply.citations, reply.covered

When even the best passage is far from the question (its dense cosine similarity is below
``threshold``), the model is not asked at all and the answer is ``NOT_COVERED``: a model given
unrelated passages tends to answer from memory anyway, which is what RAG is meant to prevent.

The default threshold (``RetrievalConfig.threshold``), 0.30, is for all-MiniLM-L6-v2 and was read
off real scores on the HR handbook (benchmarks/rag_hr_eval.py, 256-token chunks): of its 86
questions the lowest best-chunk cosine is 0.27 (a question about "the given text"), the 10th
percentile 0.44, the median 0.61; off-topic questions ("What is the capital of France?", "How do
I bake sourdough bread?") reach 0.23 at most, 0.13 typically. 0.30 sits in that gap, nearer the
off-topic side, because a refused answerable question costs more than a covered-looking off-topic
one (the prompt still tells the model to say when the passages lack the answer). Other embedding
models score on other scales: set the threshold for each.
"""

from __future__ import annotations

import re
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onthejob.errors import ConfigError, RagError
from onthejob.rag.compress import compress
from onthejob.rag.config import DEFAULT_TEMPLATE, DEFAULT_THRESHOLD, RetrievalConfig, missing_placeholders
from onthejob.rag.embed import Embedder, cached_embedder
from onthejob.rag.rerank import Reranker, cached_reranker, rerank
from onthejob.rag.store import Hit, Store
from onthejob.rag.stores import open_store

NOT_COVERED = "The documents I have do not cover this."
_CITE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass
class RagAnswer:
    text: str
    citations: list[dict[str, Any]] = field(default_factory=list)  # [{n, doc, page, heading}] cited in text
    covered: bool = True  # False: no passage passed the threshold; text is NOT_COVERED


def retrieve(
    collection: str,
    question: str,
    k: int = 5,
    *,
    store: Store | None = None,
    embedder: Embedder | None = None,
    mode: str = "hybrid",
    candidates: int = 50,
    fusion: str = "relative",
    reranker: Reranker | None = None,
) -> list[Hit]:
    """The ``k`` best chunks for ``question``; every hit carries its dense cosine (see ``_with_dense``).

    With a ``reranker``, the ``candidates`` best fused chunks are reordered by it before ``k`` are kept."""
    with (nullcontext(store) if store is not None else open_store()) as store:
        info = store.info(collection)
        embedder = embedder or cached_embedder(info.embed_model)
        check_model(collection, info.embed_model, embedder)
        vector = embedder.encode([question])[0]
        kept = max(k, candidates) if reranker is not None else k
        hits = _with_dense(store.search(collection, vector, question, k=kept, mode=mode, candidates=candidates,
                                        fusion=fusion), vector)
    return rerank(reranker, question, hits, k) if reranker is not None else hits


def check_model(collection: str, recorded: str, embedder: Embedder) -> None:
    if recorded != embedder.name:
        raise RagError(
            f"collection {collection!r} was indexed with {recorded}; querying it with {embedder.name} would compare unrelated vectors",
            fix=f"query with --embed-model {recorded} (the default for this collection), or reindex into a new collection",
        )


def best_dense(hits: list[Hit]) -> float | None:
    scores = [h.dense for h in hits if h.dense is not None]
    return max(scores) if scores else None


def rag_messages(
    messages: list[dict[str, Any]],
    hits: list[Hit],
    template: str = DEFAULT_TEMPLATE,
    threshold: float = DEFAULT_THRESHOLD,
    sentences: int | None = None,
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """The conversation with the last user message wrapped in ``template``, and the passages' sources
    (``{n, doc, page, heading, text}``; ``cited`` leaves the text out of what it returns). With
    ``sentences``, each passage is cut to that many sentences matching the question (rag/compress.py).

    Returns ``(None, [])`` when no hit reaches ``threshold``: answer ``NOT_COVERED`` without the model.
    A hit without a dense score (a sparse-only hit of a store that cannot score it) counts as passing.
    """
    check_template(template)
    best = best_dense(hits)
    if not hits or (best is not None and best < threshold):
        return None, []
    at = _last_user(messages)
    question = message_text(messages[at])
    sources, blocks = [], []
    for n, hit in enumerate(hits, start=1):
        c = hit.chunk
        sources.append({"n": n, "doc": c.doc, "page": c.meta.get("page"), "heading": c.meta.get("heading"), "text": c.text})
        text = compress(c.text, question, sentences=sentences) if sentences else c.text
        blocks.append(f"[{n}] {source_label(c.doc, c.meta)}\n{text}")
    prompt = template.replace("{context}", "\n\n".join(blocks)).replace("{question}", question)
    wrapped = [dict(m) for m in messages]
    wrapped[at] = {**wrapped[at], "content": prompt}
    return wrapped, sources


def answer(
    engine,
    collection: str,
    messages: list[dict[str, Any]],
    *,
    k: int = 5,
    params=None,
    store: Store | None = None,
    embedder: Embedder | None = None,
    mode: str = "hybrid",
    template: str = DEFAULT_TEMPLATE,
    threshold: float = DEFAULT_THRESHOLD,
) -> RagAnswer:
    """Answer the last user message of ``messages`` from ``collection`` with ``engine``."""
    question = message_text(messages[_last_user(messages)])
    hits = retrieve(collection, question, k, store=store, embedder=embedder, mode=mode)
    wrapped, sources = rag_messages(messages, hits, template, threshold)
    if wrapped is None:
        return RagAnswer(NOT_COVERED, [], covered=False)
    [completion] = engine.generate([wrapped], params)
    return RagAnswer(completion.text, cited(completion.text, sources), covered=True)


class Retriever:
    """Finds passages in one collection and wraps conversations with them: ``ojt chat/generate
    --rag NAME``, ``ojt rag query``. Open it with ``with Retriever(config) as retriever:`` (or call
    ``close()``); ``embedder`` replaces the collection's model (tests pass a fake one).

    ``prepare(messages)`` gives ``(wrapped, sources)``; ``wrapped`` is None when the documents do not
    cover the question, and the caller answers ``NOT_COVERED`` without calling the engine."""

    def __init__(self, config: RetrievalConfig, *, embedder: Embedder | None = None):
        if config.collection is None:
            raise ConfigError("no RAG collection to retrieve from", fix="name one: --rag NAME, or collection: in the config")
        self.config = config
        with ExitStack() as undo:
            self.store = open_store(config.store)
            undo.callback(self.store.close)  # only if what follows fails
            # Fail now, not at the first question, when the collection, the model or the reranker is wrong.
            info = self.store.info(config.collection)
            self.embedder = embedder or cached_embedder(config.embed_model or info.embed_model)
            check_model(config.collection, info.embed_model, self.embedder)
            self.reranker = cached_reranker(config.reranker) if config.reranker else None
            undo.pop_all()

    @property
    def collection(self) -> str:
        return self.config.collection

    def search(self, question: str) -> list[Hit]:
        c = self.config
        return retrieve(c.collection, question, c.k, store=self.store, embedder=self.embedder, mode=c.mode,
                        candidates=c.candidates, fusion=c.fusion, reranker=self.reranker)

    def prepare(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
        hits = self.search(message_text(messages[_last_user(messages)]))
        return rag_messages(messages, hits, self.config.template, self.config.threshold, self.config.sentences)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Retriever:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def retriever_from(config: RetrievalConfig | None) -> Retriever | None:
    """A ``Retriever`` for ``config`` (a stage's ``rag`` section), or None when it names no
    collection. The caller closes it, or uses ``opened_retriever``."""
    if config is None or config.collection is None:
        return None
    return Retriever(config)


def opened_retriever(config: RetrievalConfig | None):
    """``with opened_retriever(config.rag) as rag:``: a ``Retriever`` closed at the end of the
    block, or None when ``config`` names no collection."""
    retriever = retriever_from(config)
    return retriever if retriever is not None else nullcontext()


def cited(text: str, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sources that ``text`` cites as [n] (or [n, m]), in order of first citation, without
    the passages' text (the reply carries where an answer comes from, not the documents again)."""
    by_n = {s["n"]: s for s in sources}
    return [{k: v for k, v in by_n[n].items() if k != "text"} for n in cited_numbers(text) if n in by_n]


def cited_numbers(text: str) -> list[int]:
    """The passage numbers ``text`` cites as [n] or [n, m], each once, in order of first citation."""
    out: list[int] = []
    for m in _CITE.finditer(text):
        for n in (int(x) for x in m.group(1).split(",") if len(x.strip()) <= 4):
            if n not in out:
                out.append(n)
    return out


def format_sources(sources: list[dict[str, Any]]) -> str:
    """One line per source: ``[1] HR_Policy.pdf, page 3, Leave > Annual leave``."""
    return "\n".join(f"[{s['n']}] {source_label(s['doc'], s)}" for s in sources)


def source_label(doc: str, meta: dict) -> str:
    """``HR_Policy.pdf, page 3, Leave > Annual leave`` (the file name only; the full path is in the citation)."""
    parts = [Path(doc).name]
    if meta.get("page") is not None:
        parts.append(f"page {meta['page']}")
    if meta.get("heading"):
        parts.append(str(meta["heading"]))
    return ", ".join(parts)


def check_template(template: str) -> None:
    missing = missing_placeholders(template)
    if missing:
        raise RagError(f"the RAG prompt template lacks {' and '.join(missing)}", fix="write both {context} and {question} in it")


def _with_dense(hits: list[Hit], vector: np.ndarray) -> list[Hit]:
    """Fill in the dense cosine of hits the store found by keyword only, when it returned their vectors."""
    for hit in hits:
        if hit.dense is None and hit.chunk.vector is not None:
            hit.dense = float(np.dot(np.asarray(hit.chunk.vector, dtype=np.float32), vector))
    return hits


def _last_user(messages: list[dict[str, Any]]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    raise RagError("no user message to answer", fix="end the conversation with a user message")


def message_text(message: dict[str, Any]) -> str:
    """A message's text: its content, or the text parts of a list of content parts."""
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")
