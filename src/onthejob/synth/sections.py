"""Documents into passages a teacher can write questions about, each tied to where it came from.

    from onthejob.synth.sections import read_passages
    passages = read_passages(["handbook.pdf"])     # [Passage(file, page, heading, start, end, text)]

Documents are read by the same readers as ``ojt rag index`` (``onthejob.rag.ingest``), and their
text is NFKC-normalised first, so a PDF's ligatures ("ﬁ"), full-width digits and non-breaking
spaces read as the plain characters a question will use. A section (a PDF page, a heading's text,
a CSV row) is cut at blank lines into paragraphs, and neighbouring paragraphs are joined into
passages of at most ``MAX_CHARS``; a heading line on its own joins the paragraph after it. Each
passage keeps its character span in the normalised section text.

A passage's *focus sentences* are what questions are asked about: its sentences (a table's lines
count as one), those carrying the most key facts first (``onthejob.synth.facts``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from onthejob.synth.facts import key_facts

MAX_CHARS = 900  # a passage a 135M teacher still reads: ~220 tokens
MIN_CHARS = 40  # shorter passages (a page number, a lone heading) carry nothing to ask about
MIN_WORDS = 6  # a focus sentence has at least this many words
MAX_FOCUS_CHARS = 400


@dataclass(frozen=True)
class Passage:
    file: str  # the document: relative to the working folder when inside it, else absolute
    page: int | None  # 1-based PDF page; None where the format has no pages
    heading: str | None  # heading path, or "row N" for tables
    section: int  # 0-based section of the file (a page, a heading's text, a row)
    start: int  # character span in the section's normalised text
    end: int
    text: str  # the passage, its whitespace as in the document

    @property
    def id(self) -> str:
        return f"{self.file}#{self.section}:{self.start}-{self.end}"

    def source(self) -> dict:
        """What an example records about where it came from."""
        return {"file": self.file, "page": self.page, "section": self.heading or f"section {self.section + 1}",
                "span": [self.start, self.end]}


def normalise(text: str) -> str:
    """Compatibility characters as their plain forms: ligatures, full-width forms, NBSP."""
    return unicodedata.normalize("NFKC", text)


def read_passages(paths: Iterable[str | Path], *, on_file=None) -> list[Passage]:
    """Every passage of every supported file under ``paths``, in reading order. A file that
    cannot be read raises RagError naming it (before any teacher is asked anything)."""
    from onthejob.rag.ingest import find_files, read_file

    passages: list[Passage] = []
    for path in find_files(paths):
        sections = read_file(path)
        if on_file:
            on_file(path, len(sections))
        for n, section in enumerate(sections):
            text = normalise(section.text)
            for start, end in _spans(text):
                passages.append(Passage(_shown(path), section.page, section.heading, n, start, end, text[start:end]))
    return passages


def _shown(path: Path) -> str:
    """How an example names its document: relative where that is portable (a shipped example)."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _paragraphs(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for m in re.finditer(r"\n[ \t\r\f\v]*\n", text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    out = []
    for a, b in spans:  # trim whitespace, keep offsets
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        a, b = a + lead, a + len(piece.rstrip())
        if b > a:
            out.extend(_cut(text, a, b))
    return out


def _cut(text: str, a: int, b: int) -> list[tuple[int, int]]:
    """A paragraph longer than MAX_CHARS cut after sentence ends (or anywhere, as a last resort)."""
    out = []
    while b - a > MAX_CHARS:
        window = text[a:a + MAX_CHARS]
        ends = [m.end() for m in re.finditer(r"[.;!?](\s|$)", window)]
        cut = a + (ends[-1] if ends and ends[-1] > MAX_CHARS // 3 else MAX_CHARS)
        out.append((a, cut))
        a = cut
        while a < b and text[a].isspace():
            a += 1
    if b > a:
        out.append((a, b))
    return out


def _is_heading(text: str) -> bool:
    words = text.split()
    return len(words) <= 8 and not text.rstrip().endswith((".", ";", ":", "?"))


def _spans(text: str) -> list[tuple[int, int]]:
    """Passages: paragraphs joined up to MAX_CHARS, a heading kept with what follows it."""
    out: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    for a, b in _paragraphs(text):
        if cur is None:
            cur = (a, b)
        elif b - cur[0] <= MAX_CHARS and (_is_heading(text[cur[0]:cur[1]]) or text[cur[0]:cur[1]].endswith(":")
                                                or cur[1] - cur[0] < MIN_CHARS * 4):
            cur = (cur[0], b)
        else:
            out.append(cur)
            cur = (a, b)
    if cur is not None:
        out.append(cur)
    return [(a, b) for a, b in out if len(text[a:b].strip()) >= MIN_CHARS and len(text[a:b].split()) >= MIN_WORDS]


def one_line(text: str) -> str:
    """A passage's text with its line breaks and runs of spaces as single spaces (what prompts show)."""
    return " ".join(text.split())


def focus_sentences(passage: Passage, n: int) -> list[str]:
    """Up to ``n`` sentences of ``passage`` to ask about, in reading order: the most key facts
    first, then the longest. Clause numbers ("2.1", "(a)") start a new sentence and are left out;
    a sentence ending in ":" keeps the list after it; title-case lines (a contents page) are not
    sentences."""
    units = [one_line(u) for u in re.split(r"\n\s*(?=\(?\d+(?:\.\d+)+\)?\s)|\n[ \t]*\n", passage.text)]
    joined: list[str] = []
    for u in units:
        if joined and joined[-1].endswith(":"):
            joined[-1] += " " + u
        else:
            joined.append(u)
    sentences = []
    for u in joined:
        for s in re.split(r"(?<=[.;!?])\s+(?=[A-Z(]|\d+(?:\.\d+)+\s)", u):
            s = re.sub(r"^\(?\d+(?:\.\d+)*\)?\s+", "", s).strip()
            if len(s.split()) >= MIN_WORDS and _prose(s):
                sentences.append(s[:MAX_FOCUS_CHARS])
    ranked = sorted(range(len(sentences)), key=lambda i: (-len(key_facts(sentences[i])), -len(sentences[i]), i))
    return [sentences[i] for i in sorted(ranked[:n])]


def _prose(sentence: str) -> bool:
    words = [w for w in re.findall(r"[A-Za-z]+", sentence) if len(w) > 3]
    return bool(words) and sum(w[0].islower() for w in words) >= 0.4 * len(words)
