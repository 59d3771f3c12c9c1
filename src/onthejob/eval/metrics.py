"""Per-answer metrics: ``METRICS`` maps a name to a function of (item, completion).

    from onthejob.eval.metrics import score
    score(item, completion)  # {"exact_match": 0.0, "token_f1": 0.57, ..., "facts_recall": None}

A metric returns a float, or None when it does not apply (``facts_recall`` for an item without
facts); aggregates skip the Nones. Add one the way the built-ins are added::

    @metric("mentions_policy")
    def mentions_policy(item, completion):
        return float("policy" in completion.text.lower())

Text metrics follow the SQuAD evaluation script: lowercase, drop punctuation and the articles
a/an/the, collapse whitespace, then compare tokens.
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
_FENCE = re.compile(r"^```[\w-]*\s*\n(.*?)\n?```$", re.DOTALL)


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


def _squash(text: str) -> str:
    return " ".join(text.split()).lower()


def fact_recall(answer: str, facts: list[str]) -> float:
    """Share of ``facts`` that appear in ``answer`` (case and whitespace insensitive)."""
    text = _squash(answer)
    return sum(1 for f in facts if _squash(f) in text) / len(facts)


def json_valid(text: str, schema: dict) -> bool:
    """The answer, or the one fenced block it consists of, is JSON valid against ``schema``."""
    import jsonschema

    text = text.strip()
    fenced = _FENCE.match(text)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
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
