"""Find eval questions that also appear in the training data (a leak inflates every score).

    ojt data leakage TRAIN EVAL [--embed]

    from onthejob.eval.leakage import run_leakage
    leaks, text = run_leakage("data/train.jsonl", "data/eval.jsonl")

Only the user turns are compared (joined, in order): a question asked in training is a leak
whatever answer it got there. Three kinds, strongest first; each (eval, train) pair is reported
once, as the strongest kind it reaches:

- **exact**: the questions are equal after SQuAD normalisation (case, punctuation, articles,
  whitespace).
- **near**: word n-grams overlap, each n-gram weighted by how rare it is (below): the larger of
  Jaccard and containment (the share of the eval question's n-gram weight found in the training
  question, which catches a question pasted into a longer training prompt) reaches
  ``threshold``. Questions shorter than ``ngram`` words use n-grams of their own length, so a
  short question is near only when it appears whole.
- **embedding** (``embed=True``): cosine similarity of the RAG embedder's vectors reaches
  ``embed_threshold`` (0.95): the same question reworded.

Why weigh the n-grams: templated questions ("Consider the Non-Disclosure Agreement between A and
B; <one of 17 hypotheses>") share most of their n-grams with questions that ask something else
(another contract, another hypothesis), so plain overlap calls them near-duplicates. A copy
shares the part that few other questions have, a sibling only what many have, so an n-gram
``g`` weighs its inverse document frequency over all the questions compared (training and eval
together, N of them, each counted once per n-gram)::

    weight(g) = log((N + P + 1) / (df(g) + 1))        P = PSEUDO_DOCS = 20

and the sums in Jaccard and containment add weights, not counts. The P pseudo-questions, which
hold no n-gram, keep a small set from swinging the weights: among 7 questions an n-gram in 2 of
them weighs 0.85 of one in 1 (plain log(N / df) says 0.64), so a hand-sized set scores almost as
unweighted; among 90, one in 88 of them weighs about 0.05 of one in 1, so boilerplate stops
counting. A weight is never 0. When every n-gram of an eval question weighs under
``BOILERPLATE`` (5%) of a one-question n-gram, the question is all boilerplate: rather than
compare sums of near-zero weights, its n-grams count 1 each (as ``weighted=False`` counts every
question's), so a verbatim copy of it still scores 1.

What the weights cannot tell apart: an n-gram made rare by an edit weighs as much as a copied
one, so a changed word costs a little more than in plain overlap; a span shared by only a few
questions (one contract's name with a hypothesis's opening words) is discounted little, so
siblings sharing most of their words that way can still be near; and with 8-grams a
contract's name joins the hypothesis in only a few n-grams, so the same question with the
parties swapped looks like another contract asked the same thing (rewordings are what
``embed=True`` is for).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onthejob.data.schema import Example
from onthejob.eval.data import EvalItem, read_eval
from onthejob.eval.metrics import normalize

KINDS = ("exact", "near", "embedding")
PSEUDO_DOCS = 20  # P: imaginary questions sharing no n-gram, so tiny sets keep near-uniform weights
BOILERPLATE = 0.05  # every n-gram weighs under this share of a one-question n-gram: count them plainly


@dataclass
class Leak:
    """One eval question found in the training data."""

    eval_line: int  # line of the eval file
    train: str  # "source:line" of the training example
    kind: str  # "exact", "near" or "embedding"
    score: float  # 1.0 for exact; the weighted n-gram overlap or the cosine otherwise
    question: str = ""  # the eval question, for reports

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_leaks(train_examples: Sequence[Example], eval_items: Sequence[EvalItem], *, ngram: int = 8,
               threshold: float = 0.5, embed: bool = False, embed_threshold: float = 0.95,
               embedder=None, weighted: bool = True) -> list[Leak]:
    """Every (eval, train) pair that leaks, by eval line then strongest first.

    ``embedder``: anything with ``encode(texts) -> (N, dim)`` unit vectors; default the RAG
    embedder (all-MiniLM-L6-v2), used only with ``embed=True``. ``weighted=False``: every n-gram
    counts 1 in "near" (the plain overlap, for comparison)."""
    train_text = [_user_text(e.messages) for e in train_examples]
    eval_text = [_user_text(i.messages) for i in eval_items]
    train_norm, eval_norm = [normalize(t) for t in train_text], [normalize(t) for t in eval_text]
    found: dict[tuple[int, int], Leak] = {}

    by_text: dict[str, list[int]] = defaultdict(list)
    for j, t in enumerate(train_norm):
        if t:
            by_text[t].append(j)
    for i, item in enumerate(eval_items):
        for j in by_text.get(eval_norm[i], []):
            found[i, j] = Leak(item.line, train_examples[j].where, "exact", 1.0, eval_text[i])

    eval_words = [t.split() for t in eval_norm]
    index = _NgramIndex([t.split() for t in train_norm], eval_words)  # document frequencies over both
    for i, item in enumerate(eval_items):
        for j, overlap in index.overlaps(eval_words[i], ngram, weighted=weighted):
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
    """Training questions' word n-grams, per n, with an inverted index to find candidates fast,
    and every n-gram's document frequency over the training and eval questions together."""

    def __init__(self, docs: list[list[str]], others: Sequence[list[str]] = (), *, pseudo: int = PSEUDO_DOCS):
        self.docs = docs  # training questions: the ones searched
        self.others = others  # eval questions: counted in the document frequencies only
        self.log_total = math.log(len(docs) + len(others) + pseudo + 1)  # log(N + P + 1)
        self._by_n: dict[int, tuple[list[set], dict[tuple, list[int]], Counter, list[float]]] = {}

    def _grams(self, n: int):
        """(training n-gram sets, inverted index, document frequencies, each set's total weight)."""
        if n not in self._by_n:
            sets = [_ngrams(d, n) for d in self.docs]
            inverted: dict[tuple, list[int]] = defaultdict(list)
            df: Counter = Counter()
            for j, grams in enumerate(sets):
                df.update(grams)
                for g in grams:
                    inverted[g].append(j)
            for d in self.others:
                df.update(_ngrams(d, n))
            mass = [sum(self.weight(df[g]) for g in grams) for grams in sets]
            self._by_n[n] = (sets, inverted, df, mass)
        return self._by_n[n]

    def weight(self, df: int) -> float:
        return self.log_total - math.log(df + 1)  # log((N + P + 1) / (df + 1))

    def overlaps(self, words: list[str], ngram: int, *, weighted: bool = True) -> list[tuple[int, float]]:
        """(train index, max(Jaccard, containment)) over n-gram weights, for every training
        question sharing an n-gram; every weight is 1 when not ``weighted``."""
        if not words:
            return []
        n = min(ngram, len(words))
        sets, inverted, df, train_mass = self._grams(n)
        mine = _ngrams(words, n)
        weights = {g: self.weight(df[g]) for g in mine}
        if weighted and max(weights.values()) < BOILERPLATE * self.weight(1):
            weighted = False  # all boilerplate: count, rather than divide near-zero sums
        if not weighted:
            weights = dict.fromkeys(mine, 1.0)
        mass = sum(weights.values())
        shared: dict[int, float] = defaultdict(float)
        for g in mine:
            for j in inverted.get(g, ()):
                shared[j] += weights[g]
        out = []
        for j, k in shared.items():
            theirs = train_mass[j] if weighted else len(sets[j])
            jaccard = k / (mass + theirs - k)  # w(A ∩ B) / w(A ∪ B)
            out.append((j, max(jaccard, k / mass)))
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
