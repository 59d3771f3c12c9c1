"""Cut sections into chunks that follow the document's structure.

    from onthejob.rag.chunk import chunk_sections
    chunks = chunk_sections("docs/hr.pdf", sections, count_tokens=embedder.count_tokens)

A chunk never crosses a section (a page of a PDF, the text under one heading). Inside a section
the text is split into paragraphs; a paragraph longer than the target into sentences; a sentence
longer than the target into runs of words. These pieces are packed in order into chunks of at
most ``target`` tokens, and each chunk after the first of a section starts with the last pieces
of the one before, up to ``overlap`` tokens (the tail words of the last piece when even that one
is longer), so a fact cut at a boundary is still whole in one of the two chunks.

Tokens are counted with the embedding model's tokenizer, without its special tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from onthejob.errors import ConfigError
from onthejob.rag.ingest import Section
from onthejob.rag.store import Chunk, text_hash

DEFAULT_TARGET = 256
DEFAULT_OVERLAP = 32
MIN_TARGET = 8  # below this a chunk holds a few words: nothing to retrieve by

_PARAGRAPHS = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# a sentence ends at . ! ? (optionally closed by a quote or bracket) followed by space
_SENTENCES = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=\S)")


@dataclass
class _Piece:
    text: str
    tokens: int
    para: int  # paragraph number inside the section: pieces of one paragraph join with a space


def chunk_sections(
    doc: str,
    sections: Sequence[Section],
    *,
    count_tokens: Callable[[str], int],
    target: int = DEFAULT_TARGET,
    overlap: int = DEFAULT_OVERLAP,
) -> list[Chunk]:
    """Chunks of one document, numbered from 0 in reading order; ids are ``f"{doc}#{n}"``."""
    if target < MIN_TARGET:
        raise ConfigError(f"chunk target: {target} tokens (use at least {MIN_TARGET}; {DEFAULT_TARGET} is the default)")
    if not 0 <= overlap < target // 2:
        raise ConfigError(f"chunk overlap: {overlap} tokens (use 0 up to less than half the target, {target // 2})")
    chunks: list[Chunk] = []
    for section in sections:
        pieces = _pieces(section.text, count_tokens, target)
        for text in _pack(pieces, target, overlap, count_tokens):
            n = len(chunks)
            meta = {"page": section.page, "heading": section.heading, "n": n}
            chunks.append(Chunk(id=f"{doc}#{n}", doc=doc, text=text, meta=meta, hash=text_hash(text)))
    return chunks


def _clean(paragraph: str) -> str:
    lines = (" ".join(line.split()) for line in paragraph.splitlines())
    return "\n".join(line for line in lines if line)


def _pieces(text: str, count: Callable[[str], int], target: int) -> list[_Piece]:
    """Paragraphs, or sentences of long paragraphs, or word runs of long sentences; each <= target."""
    out: list[_Piece] = []
    for para, raw in enumerate(_PARAGRAPHS.split(text)):
        paragraph = _clean(raw)
        if not paragraph:
            continue
        tokens = count(paragraph)
        if tokens <= target:
            out.append(_Piece(paragraph, tokens, para))
            continue
        for sentence in _SENTENCES.split(paragraph):
            tokens = count(sentence)
            if tokens <= target:
                out.append(_Piece(sentence, tokens, para))
            else:
                out.extend(_Piece(t, n, para) for t, n in _word_runs(sentence, count, target))
    return out


def _word_runs(text: str, count: Callable[[str], int], limit: int) -> list[tuple[str, int]]:
    """Consecutive runs of whole words of at most ``limit`` tokens (a single longer word stands alone)."""
    runs, words, used = [], [], 0
    for word in text.split():
        n = count(word)
        if words and used + n > limit:
            runs.append(" ".join(words))
            words, used = [], 0
        words.append(word)
        used += n
    if words:
        runs.append(" ".join(words))
    return [(r, count(r)) for r in runs]


def _pack(pieces: list[_Piece], target: int, overlap: int, count: Callable[[str], int]) -> list[str]:
    chunks: list[str] = []
    current: list[_Piece] = []
    used = 0
    fresh = 0  # pieces in `current` that are not overlap carried from the previous chunk
    for piece in pieces:
        if current and used + piece.tokens > target:
            chunks.append(_join(current))
            current = _tail(current, overlap, count, room=target - piece.tokens)
            used = sum(p.tokens for p in current)
            fresh = 0
        current.append(piece)
        used += piece.tokens
        fresh += 1
    if current and fresh:
        chunks.append(_join(current))
    return chunks


def _tail(pieces: list[_Piece], overlap: int, count: Callable[[str], int], room: int) -> list[_Piece]:
    """The end of a finished chunk to repeat at the start of the next: whole pieces if they fit."""
    budget = min(overlap, room)
    if budget <= 0:
        return []
    tail: list[_Piece] = []
    used = 0
    for piece in reversed(pieces):
        if used + piece.tokens > budget:
            break
        tail.insert(0, piece)
        used += piece.tokens
    if tail:
        return tail
    last = pieces[-1]
    words = last.text.split()
    kept: list[str] = []
    for word in reversed(words[1:]):  # never the whole piece: it did not fit the budget
        if count(" ".join([word, *kept])) > budget:
            break
        kept.insert(0, word)
    return [_Piece(" ".join(kept), count(" ".join(kept)), last.para)] if kept else []


def _join(pieces: list[_Piece]) -> str:
    out = pieces[0].text
    for before, piece in zip(pieces, pieces[1:]):
        out += (" " if piece.para == before.para else "\n\n") + piece.text
    return out
