"""Reorder retrieved passages with a cross-encoder, which reads the question and a passage
together: more accurate than comparing two separate embeddings, and too slow to run over a whole
collection, so it sees only the fused candidates.

    ojt rag query hr "How many days of annual leave?" --reranker /models/ms-marco-MiniLM-L-6-v2
    ojt chat RUN --rag hr --rag-reranker /models/ms-marco-MiniLM-L-6-v2

With a reranker the search keeps ``candidates`` fused hits instead of ``k``, the cross-encoder
scores each against the question, and the best ``k`` by that score are kept. A reranker is
anything with ``score(query, texts) -> list[float]``; ``CrossEncoderReranker`` wraps a
sentence-transformers ``CrossEncoder`` folder (offline; a hub id works only where a network exists).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

from onthejob.errors import RagError
from onthejob.rag.store import Hit


class Reranker(Protocol):
    def score(self, query: str, texts: list[str]) -> list[float]:
        """One relevance score per text, higher is better."""


def rerank(reranker: Reranker, query: str, hits: list[Hit], k: int | None = None) -> list[Hit]:
    """Reorder ``hits`` by ``reranker``'s scores (stable for ties), keep ``k``, renumber ranks.

    Each hit's ``score`` becomes the reranker's; ``dense`` and ``sparse`` keep the retrieval scores,
    so the "not covered" threshold still reads the dense cosine.
    """
    scores = reranker.score(query, [h.chunk.text for h in hits])
    order = sorted(range(len(hits)), key=lambda i: -scores[i])[: k or len(hits)]
    out = []
    for rank, i in enumerate(order, start=1):
        h = hits[i]
        out.append(Hit(chunk=h.chunk, score=float(scores[i]), dense=h.dense, sparse=h.sparse, rank=rank))
    return out


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` loaded from ``model``: a folder, or a hub id."""

    def __init__(self, model: str, *, device: str | None = None, batch_size: int = 32):
        from sentence_transformers import CrossEncoder

        folder = Path(model).expanduser()
        self.name = str(folder.resolve()) if folder.is_dir() else model
        self.batch_size = batch_size
        try:
            self.model = CrossEncoder(self.name, device=device)
        except (OSError, ValueError) as e:  # no such folder, not a model folder, no network for a hub id
            raise RagError(
                f"cannot load the reranker {model!r}: {e}",
                fix="name a local sentence-transformers CrossEncoder folder (config.json, weights, tokenizer); "
                    "a hub id needs a network",
            ) from e

    def score(self, query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        scores = self.model.predict([(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False)
        return [float(s) for s in scores]


@functools.lru_cache(maxsize=2)
def cached_reranker(model: str) -> CrossEncoderReranker:
    """One reranker per model name, shared by every retriever of the process."""
    return CrossEncoderReranker(model)
