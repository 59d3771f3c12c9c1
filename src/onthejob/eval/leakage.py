"""Find eval questions that also appear in the training data (a leak inflates every score).

    ojt data leakage TRAIN EVAL [--embed]

    from onthejob.eval.leakage import run_leakage
    leaks, text = run_leakage("data/train.jsonl", "data/eval.jsonl")

Only the user turns are compared (joined, in order): a question asked in training is a leak
whatever answer it got there. Three kinds, strongest first; each (eval, train) pair is reported
once, as the strongest kind it reaches:

- **exact**: the questions are equal after SQuAD normalisation (case, punctuation, articles,
  whitespace).
- **near**: word n-grams overlap: the larger of Jaccard and containment (the share of the eval
  question's n-grams found in the training question, which catches a question pasted into a
  longer prompt) reaches ``threshold``. Questions shorter than ``ngram`` words use n-grams of
  their own length, so a short question is near only when it appears whole.
- **embedding** (``embed=True``): cosine similarity of the RAG embedder's vectors reaches
  ``embed_threshold`` (0.95): the same question reworded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onthejob.data.schema import Example
from onthejob.eval.data import EvalItem, read_eval
from onthejob.eval.metrics import normalize

KINDS = ("exact", "near", "embedding")


@dataclass
class Leak:
    """One eval question found in the training data."""

    eval_line: int  # line of the eval file
    train: str  # "source:line" of the training example
    kind: str  # "exact", "near" or "embedding"
    score: float  # 1.0 for exact; the n-gram overlap or the cosine otherwise
    question: str = ""  # the eval question, for reports

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_leaks(train_examples: Sequence[Example], eval_items: Sequence[EvalItem], *, ngram: int = 8,
               threshold: float = 0.5, embed: bool = False, embed_threshold: float = 0.95,
               embedder=None) -> list[Leak]:
    """Every (eval, train) pair that leaks, by eval line then strongest first.

    ``embedder``: anything with ``encode(texts) -> (N, dim)`` unit vectors; default the RAG
    embedder (all-MiniLM-L6-v2), used only with ``embed=True``."""
    train_text = [_user_text(e.messages) for e in train_examples]
    eval_text = [_user_text(i.messages) for i in eval_items]
    train_norm = [normalize(t) for t in train_text]
    found: dict[tuple[int, int], Leak] = {}

    by_text: dict[str, list[int]] = defaultdict(list)
    for j, t in enumerate(train_norm):
        if t:
            by_text[t].append(j)
    for i, item in enumerate(eval_items):
        for j in by_text.get(normalize(eval_text[i]), []):
            found[i, j] = Leak(item.line, train_examples[j].where, "exact", 1.0, eval_text[i])

    index = _NgramIndex([t.split() for t in train_norm])
    for i, item in enumerate(eval_items):
        for j, overlap in index.overlaps(normalize(eval_text[i]).split(), ngram):
            if overlap >= threshold and (i, j) not in found:
                found[i, j] = Leak(item.line, train_examples[j].where, "near", round(overlap, 4), eval_text[i])

    if embed and train_text and eval_text:
        if embedder is None:
            from onthejob.rag.embed import cached_embedder, resolve_name

            embedder = cached_embedder(resolve_name(None))
        sims = np.asarray(embedder.encode(eval_text)) @ np.asarray(embedder.encode(train_text)).T  # (E, T)
        for i, j in zip(*np.nonzero(sims >= embed_threshold)):
            if (int(i), int(j)) not in found:
                item = eval_items[i]
                found[int(i), int(j)] = Leak(item.line, train_examples[j].where, "embedding",
                                             round(float(sims[i, j]), 4), eval_text[i])
    return sorted(found.values(), key=lambda k: (k.eval_line, KINDS.index(k.kind), -k.score, k.train))


class _NgramIndex:
    """Training questions' word n-grams, per n, with an inverted index to find candidates fast."""

    def __init__(self, docs: list[list[str]]):
        self.docs = docs
        self._by_n: dict[int, tuple[list[set], dict[tuple, list[int]]]] = {}

    def _grams(self, n: int):
        if n not in self._by_n:
            sets = [_ngrams(d, n) for d in self.docs]
            inverted: dict[tuple, list[int]] = defaultdict(list)
            for j, grams in enumerate(sets):
                for g in grams:
                    inverted[g].append(j)
            self._by_n[n] = (sets, inverted)
        return self._by_n[n]

    def overlaps(self, words: list[str], ngram: int) -> list[tuple[int, float]]:
        """(train index, max(Jaccard, containment)) for every training question sharing an n-gram."""
        if not words:
            return []
        n = min(ngram, len(words))
        sets, inverted = self._grams(n)
        mine = _ngrams(words, n)
        shared: dict[int, int] = defaultdict(int)
        for g in mine:
            for j in inverted.get(g, ()):
                shared[j] += 1
        out = []
        for j, k in shared.items():
            jaccard = k / (len(mine) + len(sets[j]) - k)  # |A ∩ B| / |A ∪ B|
            out.append((j, max(jaccard, k / len(mine))))
        return out


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[k : k + n]) for k in range(len(words) - n + 1)}


def _user_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")


def leak_report(leaks: list[Leak], *, n_train: int, n_eval: int, show: int = 20) -> str:
    """A few lines for the terminal: how many eval questions leak, by kind, and the first few."""
    leaked = {k.eval_line for k in leaks}
    lines = [f"{len(leaked)} of {n_eval} eval questions also appear in the {n_train} training examples"
             + (f" ({len(leaked) / n_eval:.0%})" if n_eval else "")]
    for kind in KINDS:
        lines_of_kind = {k.eval_line for k in leaks if k.kind == kind}
        if lines_of_kind:
            lines.append(f"  {kind}: {len(lines_of_kind)} question(s)")
    for k in leaks[:show]:
        question = " ".join(k.question.split())
        question = question[:69] + "…" if len(question) > 70 else question
        lines.append(f"  eval line {k.eval_line} ~ {k.train} [{k.kind} {k.score:.2f}] {question}")
    if len(leaks) > show:
        lines.append(f"  ... and {len(leaks) - show} more")
    if leaked:
        lines.append("Remove these from the eval set (or the training set) before trusting eval scores.")
    return "\n".join(lines)


def run_leakage(train_path: str | Path, eval_path: str | Path, *, embed: bool = False, ngram: int = 8,
                threshold: float = 0.5) -> tuple[list[Leak], str]:
    """Read both files, find the leaks and describe them: what ``ojt data leakage`` prints."""
    from onthejob.data.readers import read_examples

    train = read_examples(train_path).examples
    items = read_eval(eval_path)
    leaks = find_leaks(train, items, ngram=ngram, threshold=threshold, embed=embed)
    return leaks, leak_report(leaks, n_train=len(train), n_eval=len(items))
