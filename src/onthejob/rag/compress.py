"""Passage compression: put the sentences of a retrieved chunk that match the question in the
prompt, not the whole chunk.

    compress("Annual leave is 18 days. Staff park at the back. Leave carries over up to 5 days.",
             "How many days of annual leave?", sentences=1)
    # "Annual leave is 18 days. …"

A chunk of 256 embedding tokens is about 250 tokens of the answering model, so five passages
make a prompt of ~1,300 tokens, most of them beside the question. A small model reads a short
prompt better and answers it sooner, and a run trained with passages (``data.rag``) trains on
rows a quarter as long.

A chunk is cut into sentences (also at blank lines and at numbered clauses starting a line, so a
PDF's tables and lists come apart), and each sentence is scored by the question's content words
it holds, each word weighted by how rare it is among the chunk's sentences (the word every
sentence of a leave policy holds, "leave", counts least). The ``sentences`` best are kept in
their order, with "…" where text was left out; a chunk of that many sentences or fewer is kept
whole, and so is one no sentence of which shares a word with the question.

Off by default, because on the shared HR handbook it did not make answers better
(``ojt compare`` on the 49 held-out token_presence questions of benchmarks/compare_hr_policy.py,
k = 5): the base model's RAG arm recalled 0.28 of the facts from whole passages, 0.27 from three
sentences each and 0.20 from two; the fine-tuned run with passages 0.47 whole and 0.48 from three
sentences. Three sentences did take the RAG arm 85 s instead of 154 s.
"""

from __future__ import annotations

import re

from onthejob.eval.facts import content_words

GAP = "…"
_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=\S)|\n[ \t]*\n\s*|\n(?=\s*\d+(?:\.\d+)+\s)")
# a full stop that does not end a sentence: "i.e.", "e.g.", "No. 5", an initial
_ABBREVIATION = re.compile(r"(?:\b(?:i\.e|e\.g|etc|viz|cf|vs|approx|no|nos|mr|mrs|ms|dr|st|para|cl|art|sec)|\b[a-z])\.$", re.IGNORECASE)


def sentences_of(text: str) -> list[str]:
    """``text`` cut into sentences, each with its line breaks made spaces."""
    out: list[str] = []
    for part in _SPLIT.split(text):
        part = " ".join((part or "").split())
        if not part:
            continue
        if out and _ABBREVIATION.search(out[-1]):
            out[-1] += " " + part
        else:
            out.append(part)
    return out


def compress(text: str, question: str, *, sentences: int) -> str:
    """The ``sentences`` sentences of ``text`` that match ``question`` best, in order, "…" between
    those that were not next to each other; ``text`` itself when there is nothing to leave out."""
    parts = sentences_of(text)
    if len(parts) <= sentences:
        return text
    asked = set(content_words(question))
    words = [set(content_words(p)) & asked for p in parts]
    holding = {w: sum(w in ws for ws in words) for w in asked}
    scores = [sum(1 / holding[w] for w in ws) for ws in words]
    if not any(scores):
        return text
    best = sorted(sorted(range(len(parts)), key=lambda i: (-scores[i], i))[:sentences])
    out: list[str] = []
    for j, i in enumerate(best):
        if i > (best[j - 1] + 1 if j else 0):
            out.append(GAP)
        out.append(parts[i])
    if best[-1] < len(parts) - 1:
        out.append(GAP)
    return " ".join(out)
