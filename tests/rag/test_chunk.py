"""Chunking follows the document: sections, then paragraphs, then sentences, packed with overlap."""

from __future__ import annotations

import hashlib

import pytest

from onthejob.errors import ConfigError
from onthejob.rag.chunk import chunk_sections
from onthejob.rag.ingest import Section


def words(text: str) -> int:
    """A tokenizer stand-in: one token per word, so expected sizes can be read off the text."""
    return len(text.split())


def para(tag: str, n: int) -> str:
    return " ".join(f"{tag}{i}" for i in range(n)) + "."


def test_short_sections_are_one_chunk_each_and_never_merge():
    sections = [Section("Leave is 18 days.", page=1, heading="Leave"), Section("Pay is monthly.", page=2, heading="Pay")]
    chunks = chunk_sections("hr.pdf", sections, count_tokens=words, target=50, overlap=5)
    assert [(c.id, c.text, c.meta) for c in chunks] == [
        ("hr.pdf#0", "Leave is 18 days.", {"page": 1, "heading": "Leave", "n": 0}),
        ("hr.pdf#1", "Pay is monthly.", {"page": 2, "heading": "Pay", "n": 1}),
    ]
    assert chunks[0].doc == "hr.pdf"
    assert chunks[0].hash == hashlib.sha256(b"Leave is 18 days.").hexdigest()


def test_paragraphs_are_packed_whole_and_split_at_their_boundaries():
    a, b, c = para("a", 10), para("b", 10), para("c", 10)
    [first, second] = chunk_sections("d", [Section(f"{a}\n\n{b}\n \n{c}")], count_tokens=words, target=25, overlap=0)
    assert first.text == f"{a}\n\n{b}"
    assert second.text == c


def test_long_paragraphs_split_at_sentences_and_long_sentences_at_words():
    sentences = " ".join(para(f"s{i}_", 6) for i in range(6))  # 6 sentences of 6 words
    giant = para("w", 30)  # one sentence longer than the target
    chunks = chunk_sections("d", [Section(sentences), Section(giant)], count_tokens=words, target=14, overlap=0)
    assert [words(c.text) for c in chunks] == [12, 12, 12, 14, 14, 2]
    assert chunks[0].text == f"{para('s0_', 6)} {para('s1_', 6)}"  # whole sentences
    assert " ".join(c.text for c in chunks[3:]) == giant  # word runs, in order, nothing lost


def test_every_chunk_fits_the_target_and_neighbours_overlap():
    text = "\n\n".join(" ".join(para(f"p{p}s{s}_", 7) for s in range(4)) for p in range(8))
    chunks = chunk_sections("d", [Section(text)], count_tokens=words, target=40, overlap=10)
    assert len(chunks) > 3
    assert all(words(c.text) <= 40 for c in chunks)
    for before, after in zip(chunks, chunks[1:]):
        shared = _longest_tail_head(before.text.split(), after.text.split())
        assert 1 <= shared <= 10, (before.text, after.text)
    # nothing is lost: every word of the text is in some chunk
    assert set(text.split()) == {w for c in chunks for w in c.text.split()}


def test_overlap_falls_back_to_tail_words_when_a_piece_is_too_long():
    text = para("a", 20) + "\n\n" + para("b", 20)
    first, second = chunk_sections("d", [Section(text)], count_tokens=words, target=30, overlap=5)
    assert first.text == para("a", 20)
    assert second.text.split()[:5] == ["a15", "a16", "a17", "a18", "a19."]


def test_no_overlap_across_sections():
    sections = [Section(para("a", 30), page=1), Section(para("b", 30), page=2)]
    chunks = chunk_sections("d", sections, count_tokens=words, target=20, overlap=5)
    page2 = [c for c in chunks if c.meta["page"] == 2]
    assert page2[0].text.startswith("b0 ")


@pytest.mark.parametrize(("target", "overlap"), [(4, 0), (100, 50), (100, -1)])
def test_bad_sizes_are_refused(target, overlap):
    with pytest.raises(ConfigError):
        chunk_sections("d", [Section("x")], count_tokens=words, target=target, overlap=overlap)


def _longest_tail_head(a: list[str], b: list[str]) -> int:
    return max((n for n in range(1, min(len(a), len(b)) + 1) if a[-n:] == b[:n]), default=0)
