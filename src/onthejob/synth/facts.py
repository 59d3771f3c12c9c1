"""Key facts of a sentence: the spans a correct answer must carry word for word.

    key_facts("Grade N1 to N3 staff serve 3 months of probation from 8.30 am.")
    # ["N1", "N3", "3 months", "8.30 am"]

A key fact is a number with what it counts (``3 months``, ``14 working days``, ``$500``,
``5%``, ``8.30 am``), a date, or a code such as a grade (``N4``). These are what a small model
gets wrong when it answers from memory ("18 working days" where the handbook says ten), and they
are what ``onthejob.eval.facts`` finds however they are written ("ten days" = "10 days"). Clause
numbers ("3.4") and bare years inside dates are not facts on their own.
"""

from __future__ import annotations

import re

_UNITS = (r"(?:(?:working|calendar|consecutive|business|clear|full|half|complete|man)[\s-]+)?"
          r"(?:days?|weeks?|months?|years?|hours?|hrs?|minutes?|mins?|seconds?|times?|sessions?|"
          r"employees?|staff|persons?|people|members?|copies|pages?|km|kilometres?|miles?|kg|grade)")
_WORDS = (r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
          r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|ninety|hundred|"
          r"twenty[\s-]\w+|thirty[\s-]\w+)")
_MONTHS = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_PATTERNS = [
    rf"\b\d{{1,2}}(?:\s+{_MONTHS}|(?:st|nd|rd|th)\s+(?:of\s+)?{_MONTHS})(?:,?\s+\d{{4}})?\b",  # 3 September 2012
    rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b",  # September 3, 2012
    r"\b\d{1,2}(?:[.:]\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.)(?![a-z])",  # 8.30 am
    r"(?:[$£€¥]|\b(?:S\$|US\$|USD|SGD|EUR|GBP|INR|Rs\.?)\s?)\d[\d,]*(?:\.\d+)?(?:\s?(?:million|billion|thousand|k)\b)?",
    r"\b\d[\d,]*(?:\.\d+)?\s?(?:%|per\s?cent\b|percent\b)",
    rf"\b\d[\d,]*(?:\.\d+)?\s+{_UNITS}\b",  # 3 months, 14 working days
    rf"\b{_WORDS}\s+(?:\(\d+\)\s+)?{_UNITS}\b",  # ten (10) days
    r"\b[A-Z]{1,3}\d{1,3}\b",  # grades and codes: N1, P12
]
_FACT = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)
_CODE = re.compile(r"[A-Z]{1,3}\d{1,3}")  # case matters for codes: "n1" in prose is not a grade
_CLAUSE = re.compile(r"\d+(?:\.\d+)+")


def key_facts(text: str) -> list[str]:
    """The key facts of ``text`` in order of appearance, each once (as written there)."""
    out: list[str] = []
    for m in _FACT.finditer(text):
        span = " ".join(m.group(0).split()).strip(" ,")
        if _CLAUSE.fullmatch(span) or (span[:1].isalpha() and span[-1:].isdigit() and not _CODE.fullmatch(span)
                                       and not re.match(_MONTHS, span, re.IGNORECASE)):
            continue
        if span and span.casefold() not in (o.casefold() for o in out):
            out.append(span)
    return out


def shared_run(answer: str, sentence: str, *, min_words: int = 4) -> str | None:
    """The longest run of words ``answer`` repeats from ``sentence`` holding ``min_words`` or more
    content words, as written in ``sentence``; the fact of a rule with no number in it."""
    from onthejob.eval.facts import content_words, normalize_words

    a = [w for w, _, _ in normalize_words(answer)]
    s = normalize_words(sentence)
    sw = [w for w, _, _ in s]
    best: tuple[int, int] | None = None
    for i in range(len(sw)):  # sentences are short (< 80 words): quadratic is fine
        for j in range(len(a)):
            k = 0
            while i + k < len(sw) and j + k < len(a) and sw[i + k] == a[j + k]:
                k += 1
            if k and (best is None or k > best[1] - best[0]):
                best = (i, i + k)
    if best is None:
        return None
    text = sentence[s[best[0]][1]:s[best[1] - 1][2]]
    return text if len(content_words(text)) >= min_words else None
