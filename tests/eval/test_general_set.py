"""The shipped general-skills probe set (eval/general.jsonl) and replay prompts (data/replay_prompts.jsonl).

    .venv/bin/python -m pytest -q tests/eval/test_general_set.py

No model runs here: the files parse, hold what they promise, each probe's own reference answer
passes its own checks, and no replay prompt leaks a probe (a leak would flatter the probe).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

import onthejob
from onthejob.eval.metrics import json_valid

try:  # the real matcher (number words, punctuation) once it exists; a substring test until then
    from onthejob.eval.facts import fact_recall
except ImportError:
    fact_recall = None

PACKAGE = Path(onthejob.__file__).parent
PROBES = PACKAGE / "eval" / "general.jsonl"
REPLAY = PACKAGE / "data" / "replay_prompts.jsonl"
SKILLS = {"arithmetic": 20, "units": 15, "dates": 15, "knowledge": 20, "format": 15, "refusal": 15}
CHECKS = ("facts", "regex", "json_schema", "refuse")
REFUSAL_WORDS = ("can't", "cannot", "won't", "not able", "sorry")
NGRAM = 6


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def probes() -> list[dict]:
    return read_jsonl(PROBES)


@pytest.fixture(scope="module")
def replay() -> list[dict]:
    return read_jsonl(REPLAY)


def prompt(record: dict) -> str:
    return record["messages"][0]["content"]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def alternatives(fact) -> list[str]:
    return [fact] if isinstance(fact, str) else list(fact)


def _squash(text: str) -> str:
    return " ".join(text.lower().replace("-", " ").split())


def facts_found(answer: str, facts: list) -> bool:
    """Every fact (a string, or a list of alternatives) is in the answer."""
    if fact_recall is not None:
        return fact_recall(answer, facts) == 1.0
    text = _squash(answer)
    return all(any(_squash(alt) in text for alt in alternatives(fact)) for fact in facts)


def is_refusal(answer: str) -> bool:
    text = answer.lower().replace("\u2019", "'")
    return any(w in text for w in REFUSAL_WORDS)


def test_probe_set_has_100_items_in_the_planned_skill_mix(probes):
    assert len(probes) == 100
    assert Counter(p.get("skill") for p in probes) == SKILLS


def test_each_probe_is_one_question_and_its_reference_answer(probes):
    for i, p in enumerate(probes, 1):
        roles = [m["role"] for m in p["messages"]]
        assert roles == ["user", "assistant"], f"line {i}"
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in p["messages"]), f"line {i}"
        assert len(words(prompt(p))) <= 40, f"line {i}: keep probes short"


def test_every_probe_has_a_well_formed_check(probes):
    for i, p in enumerate(probes, 1):
        assert any(p.get(key) for key in CHECKS), f"line {i}: no check"
        for fact in p.get("facts", []):
            alts = alternatives(fact)
            assert alts and all(isinstance(a, str) and a.strip() for a in alts), f"line {i}: bad fact {fact!r}"
        if "regex" in p:
            re.compile(p["regex"])
        if "json_schema" in p:
            schema = p["json_schema"]
            jsonschema.validators.validator_for(schema).check_schema(schema)
        # a refusal is the whole check: facts would reward repeating the harmful request
        assert (p["skill"] == "refusal") == bool(p.get("refuse")), f"line {i}"
        if p.get("refuse"):
            assert p["refuse"] is True and "facts" not in p, f"line {i}"


def test_each_reference_answer_passes_its_own_checks(probes):
    for i, p in enumerate(probes, 1):
        answer = p["messages"][-1]["content"]
        if p.get("facts"):
            assert facts_found(answer, p["facts"]), f"line {i}: {answer!r} misses {p['facts']}"
        if "regex" in p:
            assert re.search(p["regex"], answer), f"line {i}: {answer!r} does not match {p['regex']!r}"
        if "json_schema" in p:
            assert json_valid(answer, p["json_schema"]), f"line {i}: {answer!r} fails its schema"
        if p.get("refuse"):
            assert is_refusal(answer), f"line {i}: {answer!r} is not a refusal"


def test_the_fact_check_is_not_vacuous():
    assert facts_found("12 plus 30 is 42.", [["42", "forty-two"]])
    assert not facts_found("12 plus 30 is 32.", [["42", "forty-two"]])
    assert not is_refusal("Sure, here is how.")


def test_probe_prompts_are_distinct(probes):
    seen = Counter(" ".join(words(prompt(p))) for p in probes)
    assert [q for q, n in seen.items() if n > 1] == []


def test_replay_set_has_200_unique_short_prompts(replay):
    assert len(replay) == 200
    for i, r in enumerate(replay, 1):
        assert [m["role"] for m in r["messages"]] == ["user"], f"line {i}: a prompt, no answer"
        assert prompt(r).strip() and len(prompt(r).split()) < 60, f"line {i}"
    assert len({" ".join(words(prompt(r))) for r in replay}) == 200


def test_no_replay_prompt_shares_a_word_6gram_with_a_probe(probes, replay):
    probe_grams = set().union(*(ngrams(prompt(p)) for p in probes))
    leaks = [(prompt(r), g) for r in replay for g in ngrams(prompt(r)) & probe_grams]
    assert leaks == []
