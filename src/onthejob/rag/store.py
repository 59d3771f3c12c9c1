"""Where RAG collections live: the data classes, the ``Store`` protocol and the store registry.

A collection holds the chunks of a set of documents, each chunk with its text, metadata and
embedding vector, plus the file hash of every document as it was indexed. Two backends register
here exactly as a third party would (``@register_store``): ``sqlite`` (the embedded default, one
file under ``paths.home()/rag``) and ``postgres`` (PostgreSQL with pgvector, for shared or large
collections). ``onthejob.rag.stores.open_store(url)`` picks one by the URL's scheme:

    with open_store(url) as store:
        store.search("hr", vector, "annual leave", k=5)

This module imports no backend (they import it), so a backend, the fusion and the callers never
form an import circle.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from onthejob.errors import RagError
from onthejob.rag.fuse import METHODS

MODES = ("hybrid", "dense", "sparse")


@dataclass
class Chunk:
    id: str  # f"{doc}#{n}", unique within a collection
    doc: str  # source path as given to the indexer
    text: str
    meta: dict = field(default_factory=dict)  # e.g. {"page": 3, "heading": "Leave > Annual leave", "n": 0}
    hash: str = ""  # sha256 hex of text
    vector: np.ndarray | None = None  # float32 (dim,), L2-normalised


@dataclass
class Hit:
    chunk: Chunk  # its vector may be None
    score: float  # fused score (higher is better); dense-only: the cosine; sparse-only: the full-text score
    dense: float | None  # cosine similarity, when the chunk was among the dense candidates
    sparse: float | None  # full-text score, when the chunk was among the sparse candidates
    rank: int  # 1-based


@dataclass
class CollectionInfo:
    name: str
    embed_model: str
    dim: int
    created: str  # ISO 8601, UTC
    documents: int
    chunks: int
    size_bytes: int  # approximate: text, metadata and vectors


class Store(Protocol):
    """A backend; subclass it for ``with store: ...`` (which closes the store at the end)."""

    def create(self, name: str, *, embed_model: str, dim: int) -> None:
        """Make an empty collection; a no-op when it exists with the same model and dim."""

    def info(self, name: str) -> CollectionInfo: ...
    def list(self) -> list[CollectionInfo]: ...
    def delete(self, name: str) -> None: ...

    def documents(self, name: str) -> dict[str, str]:
        """doc -> the file hash recorded when it was indexed."""

    def doc_chunks(self, name: str, doc: str) -> list[Chunk]: ...

    def replace(self, name: str, docs: dict[str, tuple[str, list[Chunk]]], delete: list[str]) -> None:
        """In one transaction: give each doc in ``docs`` (doc -> (file hash, chunks)) exactly these
        chunks, and drop every doc in ``delete``. A crash at any point leaves the collection as before."""

    def search(self, name: str, vector: np.ndarray, text: str, *, k: int = 5, mode: str = "hybrid",
               candidates: int = 50, fusion: str = "relative") -> list[Hit]:
        """The ``k`` best chunks for a query given both as a vector and as text."""

    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


STORES: dict[str, type] = {}  # backend name -> class taking (url)
SCHEMES: dict[str, str] = {}  # URL scheme -> backend name


def register_store(name: str, *, schemes: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Register a class ``cls(url)`` implementing ``Store`` as backend ``name``, opened for URLs
    whose scheme is ``name`` or one of ``schemes``."""

    def decorate(cls: type) -> type:
        STORES[name] = cls
        for scheme in (name, *schemes):
            SCHEMES[scheme] = name
        return cls

    return decorate


# -- helpers shared by the backends -------------------------------------------------------------

# Words too common to help a keyword search (PostgreSQL's English stop list, which its 'english'
# text search configuration drops too): leaving them in makes FTS5 score
# most of the collection for every question.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing don down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me more
most my myself no nor not now of off on once only or other our ours ourselves out over own s same
she should so some such t than that the their theirs them themselves then there these they this
those through to too under until up very was we were what when where which while who whom why will
with would you your yours yourself yourselves
""".split())


# A full-text ranking scores every chunk that holds any query word before it can sort them (FTS5's
# bm25 ~1.5 us a chunk, postgres's ts_rank_cd more): a word in half of 100k chunks alone costs
# ~80 ms. So, when the words' chunks add up to more than this budget, words in more than half the
# chunks are left out (FTS5 clamps their IDF, log((N - n + 0.5) / (n + 0.5)), to 1e-6: they cannot
# change its order), and the rest are taken rarest first while their chunks fit the budget (the
# rarest always). The words left out are the collection's most common, which say least.
POSTING_BUDGET = 10_000


def query_words(text: str) -> list[str]:
    """The distinct words of ``text`` less stop words; quoted in the query, so none reads as syntax."""
    return [w for w in dict.fromkeys(re.findall(r"\w+", text.lower())) if w not in STOPWORDS]


def within_budget(df: dict[str, int], chunks: int, budget: int) -> list[str]:
    """The words to search for, rarest first: all of them when their chunks fit the budget."""
    words = sorted((w for w in df if df[w] > 0), key=lambda w: (df[w], w))
    if sum(df[w] for w in words) <= budget:
        return words
    words = [w for w in words if df[w] <= chunks / 2]  # the others weigh ~0 in BM25: skip them
    kept, total = [], 0
    for word in words:
        if kept and total + df[word] > budget:
            break
        kept.append(word)
        total += df[word]
    return kept


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_mode(mode: str, k: int, candidates: int, fusion: str = "relative") -> None:
    if mode not in MODES:
        raise RagError(f"unknown search mode {mode!r}", fix=f"use one of {', '.join(MODES)}")
    if fusion not in METHODS:
        raise RagError(f"unknown fusion method {fusion!r}", fix=f"use one of {', '.join(METHODS)}")
    if k < 1 or candidates < 1:
        raise RagError(f"k and candidates must be at least 1 (got k={k}, candidates={candidates})")


def check_chunks(name: str, dim: int, docs: dict[str, tuple[str, list[Chunk]]]) -> None:
    """Refuse, before writing anything, chunks without a vector of the collection's dim or with
    ids that repeat."""
    seen: set[str] = set()
    for doc, (_, chunks) in docs.items():
        for c in chunks:
            if c.id in seen:
                raise RagError(f"chunk id {c.id!r} appears twice in one update of collection {name!r}")
            seen.add(c.id)
            if c.doc != doc:
                raise RagError(f"chunk {c.id!r} names doc {c.doc!r} but was given under {doc!r}")
            if c.vector is None or np.shape(c.vector) != (dim,):
                got = None if c.vector is None else np.shape(c.vector)
                raise RagError(f"chunk {c.id!r} has vector shape {got}; collection {name!r} holds ({dim},)",
                               fix="embed every chunk with the collection's model before storing it")


def missing(name: str, known: list[str]) -> RagError:
    have = ", ".join(sorted(known)) or "none yet"
    return RagError(f"no RAG collection named {name!r} (known: {have})", fix="index documents into it first")


def model_clash(name: str, have: tuple[str, int], want: tuple[str, int]) -> RagError:
    return RagError(
        f"collection {name!r} was made for {have[0]} (dim {have[1]}), not {want[0]} (dim {want[1]})",
        fix="use the collection's own embedding model, or delete it / pick another name to reindex",
    )
