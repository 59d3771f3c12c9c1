"""The forgetting guard: the shipped probe, lost / gained with McNemar, and the F1 fallback."""

import json
from types import SimpleNamespace

import pytest

from onthejob.eval.config import BUILTIN, EvalConfig
from onthejob.eval.general import _by_checks, general_skills, read_general
from onthejob.eval.metrics import passed
from onthejob.eval.run import aggregate
from onthejob.eval.stats import mcnemar
from tests.runs import save_base


def test_the_shipped_probe_reads_with_a_check_on_every_item():
    items = read_general(BUILTIN)
    assert len(items) == 100
    assert all(i.facts or i.regex or i.json_schema or i.refuse for i in items)
    assert sum(i.refuse for i in items) == 15


@pytest.mark.parametrize("lost, gained, p", [(0, 0, 1.0), (3, 1, 0.625), (10, 0, 2 / 1024), (5, 5, 1.0)])
def test_mcnemar_exact(lost, gained, p):
    assert mcnemar(lost, gained) == pytest.approx(p)


def test_passed_needs_every_check_and_a_refusal_where_asked():
    item = SimpleNamespace(facts=[["42", "forty-two"]], regex=None, json_schema=None, refuse=False)
    assert passed(item, SimpleNamespace(text="It is forty-two.")) == 1.0
    assert passed(item, SimpleNamespace(text="It is 24.")) == 0.0
    harmful = SimpleNamespace(facts=[], regex=None, json_schema=None, refuse=True)
    assert passed(harmful, SimpleNamespace(text="I'm sorry, I can't help with that.")) == 1.0
    assert passed(harmful, SimpleNamespace(text="Sure, first you mix...")) == 0.0
    assert passed(SimpleNamespace(facts=[], regex=None, json_schema=None, refuse=False), SimpleNamespace(text="x")) is None


def _model(results):
    rows = [{"line": n, "passed": float(ok)} for n, ok in enumerate(results, 1)]
    return SimpleNamespace(per_example=rows, aggregates=aggregate(rows))


def test_lost_and_gained_items_with_their_skills():
    items = [SimpleNamespace(line=n, raw={"skill": s}) for n, s in enumerate(["arithmetic"] * 3 + ["dates"] * 3, 1)]
    base = _model([1, 1, 1, 0, 0, 1])
    tuned = _model([0, 0, 1, 1, 0, 0])
    result = _by_checks({"base": base, "tuned": tuned}, {"base": "base", "tuned": "tuned"}, items, 0)
    [change] = result["changes"]
    assert (change["lost"], change["gained"], change["lost_skills"]) == ([1, 2, 6], [4], {"arithmetic": 2, "dates": 1})
    assert result["sentence"] == ("general skills: tuned lost 3 / gained 1 of 6 items against base "
                                  "(McNemar p = 0.62, not significant); lost in arithmetic 2, dates 1.")
    assert result["table"]["rows"][0] == ["base", "4 of 6", "arithmetic 3/3, dates 1/3"]


def test_probe_runs_each_model_and_an_alpaca_file_falls_back_to_f1(tmp_path):
    base = save_base(tmp_path / "base")
    other = save_base(tmp_path / "other", seed=3)
    config = EvalConfig(data="unused.jsonl", model=str(other), sampling={"max_new_tokens": 4}, batch_size=50)
    result = general_skills([("base", "base", str(base)), ("tuned", "tuned", str(other))], config)
    assert result["n"] == 100 and list(result["evals"]) == ["base", "tuned"]
    assert result["sentence"].startswith("general skills: tuned lost ")
    alpaca = tmp_path / "general.json"
    alpaca.write_text(json.dumps([{"instruction": "Say hi", "input": "", "output": "hi"}] * 3))
    config = EvalConfig(data="unused.jsonl", model=str(other), general=str(alpaca), sampling={"max_new_tokens": 4})
    result = general_skills([("base", "base", str(base)), ("tuned", "tuned", str(other))], config)
    assert [c["metric"] for c in result["comparisons"]] == ["token_f1", "rouge_l"] and result["changes"] == []
