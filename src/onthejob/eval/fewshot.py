"""The few-shot arm: the base model shown the training examples most like each question.

    from onthejob.eval.fewshot import Shots
    shots = Shots.from_files(["examples/hr/train.jsonl"], k=4)
    shots.demonstrate(messages)  # [system, user1, assistant1, ..., user4, assistant4, question]

With a few hundred examples this is the cheapest strong baseline: no training, just the answers
you already have, put before the question as earlier turns of the conversation. Likeness is the
cosine of TF-IDF vectors over the questions' words and word pairs (normalised as the metrics
normalise): a question about "annual leave" finds the examples about annual leave, and words every
example shares ("please", the company's name) weigh little. The most similar example comes last,
nearest the question. An example identical to the question is still shown: that is a leak, which
the leakage check reports before anything runs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onthejob.errors import ConfigError
from onthejob.eval.metrics import normalize

MAX_EXAMPLES = 100_000  # examples searched; more is a training set, not demonstrations


def _terms(text: str) -> Counter:
    words = normalize(text).split()
    return Counter(words + [f"{a} {b}" for a, b in zip(words, words[1:])])


def _question(messages: list[dict[str, Any]]) -> str:
    users = [m for m in messages if m.get("role") == "user"]
    return str(users[-1].get("content") or "") if users else ""


class Shots:
    """Demonstrations for questions: ``pairs`` are (question, answer) texts to choose from."""

    def __init__(self, pairs: Sequence[tuple[str, str]], k: int = 4):
        if not pairs:
            raise ConfigError("the few-shot arm has no examples to show", fix="give --shots FILE with question/answer examples")
        self.pairs, self.k = list(pairs)[:MAX_EXAMPLES], k
        docs = [_terms(q) for q, _ in self.pairs]
        df = Counter(t for d in docs for t in d)
        n = len(docs)
        self.idf = {t: math.log((n + 1) / (c + 1)) + 1.0 for t, c in df.items()}  # smoothed, never 0
        self.vocab = {t: i for i, t in enumerate(df)}
        self.matrix = np.stack([self._vector(d) for d in docs])  # (examples, vocab), unit rows

    @classmethod
    def from_files(cls, paths: Sequence[str | Path], k: int = 4) -> Shots:
        """Examples from training files (any format the readers know): each one's last user turn and answer."""
        from onthejob.data.readers import read_examples

        pairs = []
        for path in paths:
            for e in read_examples(path).examples:
                if len(e.messages) >= 2 and e.messages[-1].get("role") == "assistant":
                    question = _question(e.messages[:-1])
                    if question.strip():
                        pairs.append((question, str(e.messages[-1].get("content") or "")))
        return cls(pairs, k)

    def _vector(self, terms: Counter) -> np.ndarray:
        v = np.zeros(len(self.vocab), dtype=np.float32)
        for t, c in terms.items():
            if t in self.vocab:
                v[self.vocab[t]] = (1 + math.log(c)) * self.idf[t]
        norm = float(np.linalg.norm(v))
        return v / norm if norm else v

    def nearest(self, question: str) -> list[int]:
        """Indices of the ``k`` most similar examples, most similar first (ties: file order)."""
        sims = self.matrix @ self._vector(_terms(question))  # (examples,)
        order = np.argsort(-sims, kind="stable")
        return [int(i) for i in order[: self.k]]

    def demonstrate(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``messages`` with the demonstrations as earlier turns, after any system message."""
        system = [m for m in messages if m.get("role") == "system"]
        rest = [m for m in messages if m.get("role") != "system"]
        demos = []
        for i in reversed(self.nearest(_question(messages))):  # the most similar nearest the question
            q, a = self.pairs[i]
            demos += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return [*system, *demos, *rest]
