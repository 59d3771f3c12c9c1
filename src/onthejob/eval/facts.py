"""Facts found in an answer the way a human reader would find them: numbers by value, words by stem.

    from onthejob.eval.facts import declines, fact_recall, match_fact
    answer = "Full-time staff accrue 10 days per calendar year."
    m = match_fact(answer, ["ten days", "10 days"])   # a fact, or a list of alternatives
    m.how, m.matched, answer[m.start:m.end]           # ("exact", "ten days", "10 days")
    fact_recall(answer, ["ten days", "full time"])    # 1.0
    declines("The handbook does not say.")            # True

Answer and fact are normalised alike, token by token (``normalize_words``): Unicode NFKC, casefold,
curly quotes made plain, dashes and "/" split words ("full-time" = "full time", "ED/CEO" =
"ed ceo"), other punctuation dropped, so are the articles a/an/the (but not one ending a sentence:
"plan A."), "can't" = "cannot" = "can not". Numbers become one token holding their value: "ten" =
"10" = "10.0", "twenty-five" = 25, "one hundred and five" = 105, "2,000,000" = "$2 million" = "2M"
(k, m, mn, bn; currency symbols, codes and "dollars"/"euros" beside a number dropped), "three (3)"
= "3", ordinals "third" = "3rd", "%" = "percent".

A fact matches ``exact`` when its tokens appear contiguously in the answer's. A fact with four or
more content words (not stopwords, not negations) also matches ``words`` when 75% of them appear
close together (within twice the fact's length plus four tokens) and both or neither of the fact
and that stretch of the answer (widened by up to three tokens to the left, within its sentence)
hold a negation. Words count as the same when they share their first five letters
(approval/approved) or differ only in an ending of up to three letters after three shared ones
(day/days, use/used); numbers only by value. A fact left with no tokens (say "!!") never matches.
"""

from __future__ import annotations

import functools
import math
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal


@dataclass(frozen=True)
class FactMatch:
    """How one fact was found in an answer; ``start``/``end`` index the original answer text."""

    fact: str  # the fact as written (for a list of alternatives: the first)
    matched: str | None  # the alternative that matched, None when none did
    start: int | None  # character span of the match in the answer, None when unmatched
    end: int | None
    how: str  # "exact", "words" or "" (unmatched)


@dataclass(frozen=True)
class _Tok:
    text: str  # the normalised token
    start: int  # character span: in the normalised text while tokenising, then in the original
    end: int
    glued: bool = False  # nothing between it and the previous token ("2" "m" in "2m")
    after_break: bool = False  # a sentence break (. ! ? ; newline) or the text start precedes it


_ARTICLES = {"a", "an", "the"}
_NEGATIONS = {"not", "no", "never", "nor", "none", "neither", "without", "unless"}
_STOPWORDS = set("""
    a an the and or but if then so than as of to in on at by for with from into onto over under
    about after before during within between through per via is are was were be been being am do
    does did done has have had having can could will would shall should may might must it its this
    that these those there here they them their theirs he him his she her hers we us our you your
    i me my who whom whose which what when where why how all any each both either some such only
    own same too very also just up down out off again further more most other another""".split())
_CURRENCY = {"usd", "eur", "gbp", "cad", "aud", "chf", "jpy", "inr", "dollar", "dollars", "euro", "euros"}

_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen " \
         "fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_CARDINAL = {w: n for n, w in enumerate(_UNITS)} | {w: 10 * n for n, w in enumerate(_TENS, 2)}
_ORDINAL = {"first": 1, "second": 2, "third": 3, "fifth": 5, "eighth": 8, "ninth": 9, "twelfth": 12}
_ORDINAL |= {w + "th": n for w, n in _CARDINAL.items() if 3 < n < 20 and n not in _ORDINAL.values()}
_ORDINAL |= {w[:-1] + "ieth": n for w, n in _CARDINAL.items() if n >= 20}
_SCALES = {"hundred": 100, "thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_ORDINAL |= {w + "th": n for w, n in _SCALES.items()}
_KIND = {n: "hundred" if n == 100 else "scale" if n >= 1000 else "tens" if n >= 20 else "teen" if n >= 10
         else "unit" for n in [*_CARDINAL.values(), *_SCALES.values()]}
_NUMBER_WORDS = ({w: (_KIND[n], n, False) for w, n in (_CARDINAL | _SCALES).items()}
                 | {w: (_KIND[n], n, True) for w, n in _ORDINAL.items()} | {"dozen": ("dozen", 12, False)})
_SUFFIXES = {"k": 10**3, "m": 10**6, "mn": 10**6, "bn": 10**9}
# Which kind of number word may follow which: "twenty five" is one number, "one two" is two.
_NEXT = {None: {"unit", "teen", "tens", "hundred", "scale", "dozen"}, "unit": {"hundred", "scale", "dozen"},
         "teen": {"hundred", "scale", "dozen"}, "tens": {"unit", "scale", "dozen"},
         "hundred": {"unit", "teen", "tens", "scale"}, "scale": {"unit", "teen", "tens"},
         "and": {"unit", "teen", "tens"}, "dozen": set()}

_QUOTES = str.maketrans({c: "'" for c in "\u2018\u2019\u201a\u201b\u2032\u02bc`\u00b4"}
                        | {c: '"' for c in "\u201c\u201d\u201e\u201f\u2033"})
_INVISIBLE = {"\u00ad", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}  # soft hyphen, zero widths
_RAW = re.compile(r"[0-9]+(?:,[0-9]{3})+(?:\.[0-9]+)?(?![0-9])|[0-9]+(?:\.[0-9]+)?"
                  r"|[^\W\d_]+(?:'[^\W\d_]+)*|%")
_BREAK = re.compile(r"[.!?;\n]")
_PAREN = re.compile(r"\s*\(\s*[^\w\s]?\s*")  # between "three" and "3" in "three (3)" or "($3"
_CLITIC = re.compile(r"'(?:s|ll|re|ve|d|m)$")


def normalize_words(text: str) -> list[tuple[str, int, int]]:
    """``text``'s normalised tokens, each with its character span in ``text``.

        normalize_words("Ten (10) days")  # [("10", 0, 8), ("days", 9, 13)]"""
    return [(t.text, t.start, t.end) for t in _tokens(text)]


def content_words(text: str) -> list[str]:
    """``text``'s normalised tokens less stopwords and negations, numbers included.

        content_words("Employees may not use the 2 cars")  # ["employees", "use", "2", "cars"]"""
    return [t.text for t in _tokens(text) if _is_content(t.text)]


def match_fact(answer: str, fact: str | list[str]) -> FactMatch:
    """The first way ``fact`` (or any of a list of alternatives) is found in ``answer``."""
    return _match(_tokens(answer), fact)


def match_facts(answer: str, facts: list[str | list[str]]) -> list[FactMatch]:
    """``match_fact`` for each fact, normalising the answer once."""
    tokens = _tokens(answer)
    return [_match(tokens, f) for f in facts]


def fact_recall(answer: str, facts: list[str | list[str]]) -> float:
    """Share of ``facts`` found in ``answer``."""
    if not facts:
        raise ValueError("fact_recall needs at least one fact")
    return sum(m.matched is not None for m in match_facts(answer, facts)) / len(facts)


def _match(answer: Sequence[_Tok], fact: str | list[str]) -> FactMatch:
    alternatives = [fact] if isinstance(fact, str) else list(fact)
    if not alternatives:
        raise ValueError("a fact needs at least one alternative")
    facts = [(alt, _tokens(alt)) for alt in alternatives]
    # Exact before words across all alternatives: "10 days" found verbatim beats a loose match.
    for how, find in (("exact", _exact), ("words", _words)):
        for alt, tokens in facts:
            span = find(answer, tokens) if tokens else None
            if span:
                return FactMatch(alternatives[0], alt, answer[span[0]].start, answer[span[1]].end, how)
    return FactMatch(alternatives[0], None, None, None, "")


def _exact(answer: Sequence[_Tok], fact: Sequence[_Tok]) -> tuple[int, int] | None:
    words, want = [t.text for t in answer], [t.text for t in fact]
    for i in range(len(words) - len(want) + 1):
        if words[i:i + len(want)] == want:
            return i, i + len(want) - 1
    return None


def _words(answer: Sequence[_Tok], fact: Sequence[_Tok]) -> tuple[int, int] | None:
    """The stretch of ``answer`` holding most of the fact's content words (75% at least, shortest
    on a tie) whose negation agrees with the fact's."""
    content = list(dict.fromkeys(t.text for t in fact if _is_content(t.text)))
    if len(content) < 4:
        return None
    need, longest = math.ceil(0.75 * len(content)), 2 * len(fact) + 4
    negated = any(t.text in _NEGATIONS for t in fact)
    hits = [{c for c, w in enumerate(content) if _same(w, t.text)} if _is_content(t.text) else set() for t in answer]
    best, best_key = None, None
    for i in (i for i, found in enumerate(hits) if found):
        seen: set[int] = set()
        for j in range(i, min(len(answer), i + longest)):
            if hits[j] - seen:
                seen |= hits[j]
                key = (len(seen), i - j)
                if len(seen) >= need and (best_key is None or key > best_key) and _negated(answer, i, j) == negated:
                    best, best_key = (i, j), key
    return best


def _negated(answer: Sequence[_Tok], left: int, right: int) -> bool:
    # Negators come before what they negate ("without prior approval"), so look a little left.
    lo = left
    while lo > 0 and left - lo < 3 and not answer[lo].after_break:
        lo -= 1
    return any(t.text in _NEGATIONS for t in answer[lo:right + 1])


def _is_content(word: str) -> bool:
    return word not in _STOPWORDS and word not in _NEGATIONS


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    if a[0].isdigit() or b[0].isdigit():
        return False  # numbers compare by value only: 10 is not 100
    shared = len(os.path.commonprefix([a, b]))
    return shared >= 5 or (shared >= 3 and len(a) - shared <= 3 and len(b) - shared <= 3)


# ------------------------------------------------------------------------------------------------
# Normalisation


@functools.lru_cache(maxsize=512)
def _tokens(text: str) -> tuple[_Tok, ...]:
    # Cached: one answer is matched by several metrics (facts_recall, passed, confidently_wrong,
    # citation_precision, the report's facts_found), each fact for every arm, and a retrieving
    # arm's passages for every answer that shares them. Tokens are frozen, so sharing is safe;
    # the texts are answers, facts and single passages, so 512 of them hold tens of MB at most.
    norm, origin = _normalise(text)
    tokens = _collapse_duplicates(_numbers(_raw_tokens(norm)), norm)
    tokens = [t for i, t in enumerate(tokens) if not _dropped(tokens, i)]
    return tuple(replace(t, start=origin[t.start][0], end=origin[t.end - 1][1]) for t in tokens)


def _normalise(text: str) -> tuple[str, list[tuple[int, int]]]:
    """NFKC + casefold + plain quotes + dashes as spaces, with each output character's source span."""
    out, origin, i = [], [], 0
    while i < len(text):
        j = i + 1
        while j < len(text) and unicodedata.combining(text[j]):
            j += 1  # a base character and its accents normalise together ("e" + U+0301 = "é")
        for c in unicodedata.normalize("NFKC", text[i:j]).casefold().translate(_QUOTES):
            if c in _INVISIBLE:
                continue
            out.append(" " if unicodedata.category(c) == "Pd" or c == "\u2212" else c)
            origin.append((i, j))
        i = j
    return "".join(out), origin


def _raw_tokens(norm: str) -> list[_Tok]:
    tokens, prev = [], 0
    for m in _RAW.finditer(norm):
        glued, after_break = m.start() == prev and prev > 0, prev == 0 or bool(_BREAK.search(norm, prev, m.start()))
        for text in _split_word(m.group()):
            tokens.append(_Tok(text, m.start(), m.end(), glued, after_break))
        prev = m.end()
    return tokens


def _split_word(word: str) -> list[str]:
    """"can't" and "cannot" -> can, not; "won't" -> will, not; "employee's" -> employee."""
    if word == "%":
        return ["percent"]
    if word == "cannot":
        return ["can", "not"]
    if word.endswith("n't"):
        base = {"ca": "can", "wo": "will", "sha": "shall"}.get(word[:-3], word[:-3])
        return [base.replace("'", ""), "not"] if base else ["not"]
    return [_CLITIC.sub("", word).replace("'", "")]


def _dropped(tokens: list[_Tok], i: int) -> bool:
    """Articles go, unless one ends its sentence ("plan A."); currency codes beside a number go."""
    word, nxt = tokens[i].text, tokens[i + 1] if i + 1 < len(tokens) else None
    if word in _ARTICLES:
        return nxt is not None and not nxt.after_break
    prev = tokens[i - 1] if i else None
    return word in _CURRENCY and any(t is not None and t.text[0].isdigit() for t in (prev, nxt))


def _numbers(tokens: list[_Tok]) -> list[_Tok]:
    """Number words and digits (with their scale) as one token holding the value: "10", "21st"."""
    out, i = [], 0
    while i < len(tokens):
        found = _digit_number(tokens, i) if tokens[i].text[0].isdigit() else _word_number(tokens, i)
        if found is None:
            out.append(tokens[i])
            i += 1
            continue
        used, value, ordinal = found
        text = _ordinal(int(value)) if ordinal else _number_text(value)
        out.append(replace(tokens[i], text=text, end=tokens[i + used - 1].end))
        i += used
    return out


def _digit_number(tokens: list[_Tok], i: int) -> tuple[int, Decimal, bool] | None:
    digits = tokens[i].text.replace(",", "")
    if len(digits) > 40:
        return None  # not a quantity anyone writes; keep the digits as they are
    value, j = Decimal(digits), i + 1
    nxt = tokens[j] if j < len(tokens) else None
    if nxt is not None and nxt.glued and nxt.text in ("st", "nd", "rd", "th") and value == int(value):
        return 2, value, True
    if nxt is not None and nxt.glued and nxt.text in _SUFFIXES:
        return 2, value * _SUFFIXES[nxt.text], False
    while j < len(tokens) and tokens[j].text in _SCALES:  # "2 million", "1.5 thousand"
        value, j = value * _SCALES[tokens[j].text], j + 1
    return j - i, value, False


def _word_number(tokens: list[_Tok], i: int) -> tuple[int, Decimal, bool] | None:
    """(tokens used, value, ordinal?) for number words from ``tokens[i]``: "one hundred and five"."""
    total, current, last, last_scale, used, j = 0, 0, None, None, 0, i
    while j < len(tokens):
        word = tokens[j].text
        if word == "and" and last in ("hundred", "scale") and j + 1 < len(tokens) \
                and _NUMBER_WORDS.get(tokens[j + 1].text, (None,))[0] in _NEXT["and"]:
            last, j = "and", j + 1
            continue
        kind, value, ordinal = _NUMBER_WORDS.get(word, (None, 0, False))
        if kind not in _NEXT[last] or (kind == "hundred" and current >= 100) \
                or (kind == "scale" and last_scale is not None and value >= last_scale):
            break
        if kind == "hundred":
            current = (current or 1) * 100
        elif kind == "dozen":
            current = (current or 1) * 12
        elif kind == "scale":
            total, current, last_scale = total + (current or 1) * value, 0, value
        else:
            current += value
        last, j = kind, j + 1
        used = j - i
        if ordinal:
            break  # "twenty first" ends at "first"
    return (used, Decimal(total + current), ordinal) if used else None


def _number_text(value: Decimal) -> str:
    return str(int(value)) if value == int(value) else format(value.normalize(), "f")


def _ordinal(n: int) -> str:
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _collapse_duplicates(tokens: list[_Tok], norm: str) -> list[_Tok]:
    """"three (3)" and "ten (10) days" say each number once: the spelled-out token swallows the digits."""
    out = []
    for t in tokens:
        prev = out[-1] if out else None
        if prev is not None and t.text == prev.text and t.text[0].isdigit() \
                and _PAREN.fullmatch(norm, prev.end, t.start):
            end = t.end + 1 if norm[t.end:t.end + 1] == ")" else t.end
            out[-1] = replace(prev, end=end)
        else:
            out.append(t)
    return out


# ------------------------------------------------------------------------------------------------
# Declining to answer

_DOCS = (r"(?:documents?|handbook|polic(?:y|ies)|context|sources?|information|materials?|texts?|excerpts?"
         r"|passages?|manual|guide)")
_DECLINE = re.compile("|".join([
    r"\bi\s+(?:do\s+not|don't)\s+know\b",
    r"\bi(?:\s+am|'m)\s+(?:not\s+sure|unsure)\b",
    r"\b(?:i|we)(?:\s+am|'m|\s+are|'re)?\s+(?:cannot|can\s+not|can't|could\s+not|couldn't|unable\s+to|not\s+able\s+to)"
    r"\s+(?:help|answer|assist|provide|find|locate|say|tell|determine|confirm|comment|give|share|access|speak)\b",
    r"\b(?:i|we)\s+(?:do\s+not|don't)\s+have\s+(?:any\s+|enough\s+|the\s+|that\s+|specific\s+|relevant\s+)*"
    r"(?:information|details|data|access|knowledge|context)\b",
    rf"\b{_DOCS}\b[^.!?]{{0,40}}?\b(?:do|does|did)(?:\s+not|n't)\s+(?:cover|say|mention|specify|contain|address"
    r"|include|provide|state|discuss|describe|explain|answer)\b",
    r"\bno\s+(?:specific\s+|relevant\s+)?(?:information|mention|details)\s+(?:about|on|of|regarding|in)\b",
    rf"\bnot\s+(?:covered|mentioned|specified|addressed|stated|included|found|provided)\s+in\s+"
    rf"(?:the\s+|my\s+|these\s+|this\s+)?{_DOCS}\b",
    r"\b(?:cannot|can\s+not|can't)\s+be\s+(?:determined|answered|found)\b",
]))


def declines(text: str) -> bool:
    """The answer opens by declining: "I don't know", "The handbook does not say", "I cannot provide ...".

    Only the opening sentence counts (a short one without a number, like "Sorry.", joins the next),
    so one that answers, then notes a gap ("10 days. The handbook does not say whether ...") does not."""
    norm, _ = _normalise(text)
    opening = ""
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", norm.strip()):
        opening = f"{opening} {sentence}"
        if len(opening.split()) >= 4 or any(t.text[0].isdigit() for t in _tokens(sentence)):
            break
    return _DECLINE.search(opening) is not None
