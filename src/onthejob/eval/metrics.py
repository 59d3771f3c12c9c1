"""Per-answer metrics: ``METRICS`` maps a name to a function of (item, completion).

    from onthejob.eval.metrics import score
    score(item, completion)  # {"exact_match": 0.0, "token_f1": 0.57, ..., "facts_recall": None}

A metric returns a float, or None when it does not apply (``facts_recall`` for an item without
facts); aggregates skip the Nones. Add one the way the built-ins are added::

    @metric("mentions_policy")
    def mentions_policy(item, completion):
        return float("policy" in completion.text.lower())

Text metrics follow the SQuAD evaluation script: lowercase, drop punctuation and the articles
a/an/the, collapse whitespace, then compare tokens. ``facts_recall`` is the share of the item's facts
found as ``onthejob.eval.facts`` finds them (numbers by value, long facts by their words).
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from onthejob.errors import ConfigError
from onthejob.eval.data import EvalItem
from onthejob.eval.facts import fact_recall  # re-exported: callers import it from here too


class Answer(Protocol):
    """What metrics read from a completion (``onthejob.generate.Completion`` has it all)."""

    text: str
    finish_reason: str
    completion_tokens: int
    seconds: float


Metric = Callable[[EvalItem, Answer], "float | None"]
METRICS: dict[str, Metric] = {}

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_FENCE = re.compile(r"^```[\w-]*[ \t]*\n(.*?)\n?```[ \t]*$", re.DOTALL | re.MULTILINE)


def metric(name: str):
    """Register ``fn(item, completion) -> float | None`` under ``name``."""

    def register(fn: Metric) -> Metric:
        METRICS[name] = fn
        return fn

    return register


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}", fix=f"use one of: {', '.join(METRICS)}")
    return METRICS[name]


def score(item: EvalItem, completion: Answer, names: list[str] | None = None) -> dict[str, float | None]:
    """Every metric (or those in ``names``) for one answer."""
    return {name: get_metric(name)(item, completion) for name in (names or list(METRICS))}


# ------------------------------------------------------------------------------------------------
# Text helpers


def normalize(text: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall, counting repeated tokens (SQuAD)."""
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)  # both empty: a match; one empty: nothing in common
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence length, O(len(a) * len(b)) time, O(len(b)) memory."""
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag = 0  # row[j-1] of the previous row
        for j, y in enumerate(b, 1):
            prev_diag, row[j] = row[j], prev_diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l_f(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta = 1) over normalised tokens: LCS / length for P and R."""
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def json_valid(text: str, schema: dict) -> bool:
    """The answer is JSON valid against ``schema``: the whole answer, or the one fenced block in it
    (a reader accepts a ```json block with a sentence around it; two blocks are ambiguous)."""
    import jsonschema

    text = text.strip()
    fenced = _FENCE.findall(text)
    try:
        value = json.loads(fenced[0] if len(fenced) == 1 else text)
    except ValueError:
        return False
    return jsonschema.validators.validator_for(schema)(schema).is_valid(value)


# ------------------------------------------------------------------------------------------------
# The built-in metrics


@metric("exact_match")
def exact_match(item: EvalItem, completion: Answer) -> float:
    return float(normalize(completion.text) == normalize(item.reference))


@metric("token_f1")
def token_f1(item: EvalItem, completion: Answer) -> float:
    return f1(completion.text, item.reference)


@metric("rouge_l")
def rouge_l(item: EvalItem, completion: Answer) -> float:
    return rouge_l_f(completion.text, item.reference)


@metric("facts_recall")
def facts_recall(item: EvalItem, completion: Answer) -> float | None:
    return fact_recall(completion.text, item.facts) if item.facts else None


@metric("format_valid")
def format_valid(item: EvalItem, completion: Answer) -> float | None:
    """1 when the answer passes every format rule of the item (regex, JSON schema), else 0."""
    if item.regex is None and item.json_schema is None:
        return None
    ok = item.regex is None or re.search(item.regex, completion.text) is not None
    ok = ok and (item.json_schema is None or json_valid(completion.text, item.json_schema))
    return float(ok)


@metric("answer_tokens")
def answer_tokens(item: EvalItem, completion: Answer) -> float:
    return float(completion.completion_tokens)


@metric("stopped")
def stopped(item: EvalItem, completion: Answer) -> float:
    """1 when the model ended its answer itself (end of turn) rather than hitting max_new_tokens."""
    return float(completion.finish_reason == "stop")


@metric("latency_s")
def latency_s(item: EvalItem, completion: Answer) -> float | None:
    # None for answers the model never produced (RAG's NOT_COVERED): 0 s would flatter the mean.
    return completion.seconds if completion.completion_tokens else None


@metric("tokens_per_s")
def tokens_per_s(item: EvalItem, completion: Answer) -> float | None:
    if not completion.completion_tokens or completion.seconds <= 0:
        return None
    return completion.completion_tokens / completion.seconds


# ------------------------------------------------------------------------------------------------
# Grounded answers: did the answer come from the passages, and does it know when it cannot answer?
# ``citation_precision`` and ``answer_support`` read the passages a retrieving arm was given
# (``completion.passages``) and are None for other arms; ``abstained`` and ``confidently_wrong``
# apply to every arm, since a model without documents can invent an answer too.


@metric("passed")
def passed(item: EvalItem, completion: Answer) -> float | None:
    """1 when every check of the item holds: each fact stated, the regex and JSON schema met, and a
    refusal where the item asks for one (``refuse: true``); None for an item without checks."""
    from onthejob.eval.facts import declines, fact_recall

    if not (item.facts or item.regex or item.json_schema or item.refuse):
        return None
    ok = not item.refuse or declines(completion.text)
    ok = ok and (not item.facts or fact_recall(completion.text, item.facts) >= 1.0)
    return float(ok and format_valid(item, completion) in (None, 1.0))


@metric("abstained")
def abstained(item: EvalItem, completion: Answer) -> float | None:
    """On a question the documents do not cover (``covered: false``): 1 when the answer declines."""
    from onthejob.eval.facts import declines

    return None if item.covered else float(declines(completion.text))


@metric("confidently_wrong")
def confidently_wrong(item: EvalItem, completion: Answer) -> float | None:
    """1 for an answer that does not decline and is wrong: any answer to a question the documents
    do not cover, or one stating none of the facts; 0 for a decline or a right answer."""
    from onthejob.eval.facts import declines, fact_recall

    if declines(completion.text):
        return 0.0
    if not item.covered:
        return 1.0
    if not item.facts:
        return None
    return float(fact_recall(completion.text, item.facts) == 0.0)


@metric("citation_precision")
def citation_precision(item: EvalItem, completion: Answer) -> float | None:
    """Of the passages the answer cites as [n], the share that contain a fact the answer states;
    None without passages, facts, citations or a stated fact."""
    from onthejob.eval.facts import match_fact, match_facts
    from onthejob.rag.answer import cited_numbers

    passages = {p["n"]: p.get("text") or "" for p in getattr(completion, "passages", None) or []}
    cited = [n for n in cited_numbers(completion.text) if n in passages]
    if not cited or not item.facts:
        return None
    stated = [fact for fact, m in zip(item.facts, match_facts(completion.text, item.facts)) if m.matched]
    if not stated:
        return None
    return sum(1 for n in cited if any(match_fact(passages[n], f).matched for f in stated)) / len(cited)


@metric("answer_support")
def answer_support(item: EvalItem, completion: Answer) -> float | None:
    """The share of the answer's content words found in the passages it was given; None without
    passages or for an answer that declines."""
    from onthejob.eval.facts import content_words, declines

    passages = getattr(completion, "passages", None)
    if not passages or declines(completion.text):
        return None
    words = content_words(_CITATION.sub(" ", completion.text))  # "[1]" is no claim about the passages
    if not words:
        return None
    found = {w for p in passages for w in content_words(p.get("text") or "")}  # per passage: each is cached
    return sum(1 for w in words if w in found) / len(words)
