"""Combining the dense (vector) and sparse (full-text) candidate lists into one ranking.

Two methods, both needing no calibration between cosines and BM25 / ``ts_rank_cd`` scores, which
live on unrelated scales:
- ``relative`` (the default): each list's scores are min-max normalised to [0, 1] over its
  candidates and mixed as ``alpha * dense + (1 - alpha) * sparse`` (a chunk missing from a list
  gets 0 there). Unlike rank fusion it keeps *how much* better the first candidate is.
- ``rrf``, reciprocal rank fusion (Cormack et al., 2009): each list gives ``1 / (rrf_k + rank)``.

Measured on the HR handbook (86 questions, benchmarks/rag_hr_eval.py): dense MRR 0.834, BM25
0.910; RRF hybrid 0.874 (between them), relative fusion at the untuned alpha 0.5: 0.911, and
hit@5 1.000 for both (dense 0.953, BM25 0.988). Both stores fuse with this one function, so they
rank the same candidates the same way. ``ojt rag query --fusion rrf`` (``fusion:`` in a
``RetrievalConfig``) picks the method; a cross-encoder can reorder the fused hits afterwards
(onthejob.rag.rerank).

This module imports nothing of onthejob: the stores import it, and onthejob.rag.store its METHODS.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

RRF_K = 60
ALPHA = 0.5  # weight of the dense list in relative fusion; equal weights, not tuned
METHODS = ("relative", "rrf")


@dataclass
class Fused:
    key: Hashable  # the store's own handle for the chunk (a rowid, a primary key)
    score: float
    dense: float | None
    sparse: float | None


def fuse(dense: Sequence[tuple[Hashable, float]], sparse: Sequence[tuple[Hashable, float]], *, mode: str,
         k: int, method: str = "relative", alpha: float = ALPHA, rrf_k: int = RRF_K) -> list[Fused]:
    """The ``k`` best of two candidate lists, each ``[(key, score)]`` best first.

    ``mode="dense"`` / ``"sparse"`` keep that list's order and score; ``"hybrid"`` fuses both
    (``method``: see the module docstring). Ties break by the better single-list rank, then by
    key, so equal inputs always give the same order.
    """
    dense_score = dict(dense)
    sparse_score = dict(sparse)
    if mode == "dense":
        return [Fused(key, s, s, None) for key, s in dense[:k]]
    if mode == "sparse":
        return [Fused(key, s, None, s) for key, s in sparse[:k]]
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}; known: {', '.join(METHODS)}")
    fused: dict[Hashable, float] = {}
    best: dict[Hashable, int] = {}
    for ranking, weight in ((dense, alpha), (sparse, 1 - alpha)):
        normalised = _min_max(ranking)
        for rank, (key, _) in enumerate(ranking, start=1):
            part = weight * normalised[key] if method == "relative" else 1.0 / (rrf_k + rank)
            fused[key] = fused.get(key, 0.0) + part
            best[key] = min(best.get(key, rank), rank)
    order = sorted(fused, key=lambda key: (-fused[key], best[key], str(key)))[:k]
    return [Fused(key, fused[key], dense_score.get(key), sparse_score.get(key)) for key in order]


def _min_max(ranking: Sequence[tuple[Hashable, float]]) -> dict[Hashable, float]:
    if not ranking:
        return {}
    scores = [s for _, s in ranking]
    low, high = min(scores), max(scores)
    return {key: (s - low) / (high - low) if high > low else 1.0 for key, s in ranking}
