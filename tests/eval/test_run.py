"""evaluate() on a tiny base model and a run with a random LoRA adapter, on CPU."""

import math

import pytest
import torch
import torch.nn.functional as F

from onthejob.data.schema import Example
from onthejob.data.template import IGNORE_INDEX, tokenize_example
from onthejob.eval.data import EvalItem
from onthejob.eval.metrics import METRICS
from onthejob.eval.run import evaluate, reference_loss
from onthejob.models.adapters import load_for_inference
from onthejob.rag.answer import NOT_COVERED
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams
from tests.runs import make_run, save_base

PARAMS = SamplingParams(max_new_tokens=6)
TIMING = ("latency_s", "tokens_per_s")
ITEMS = [
    EvalItem(1, [{"role": "user", "content": "What is the weather in Paris?"}], "It is sunny and 21 degrees.",
             facts=["sunny"]),
    EvalItem(2, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "My printer is broken"}],
             "Turn it off and on again."),
    EvalItem(4, [{"role": "user", "content": "Hello!"}], "How can I help you today?", regex=r"\?$"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalrun")
    base = save_base(root / "base")
    return {"base": base, "run": make_run(root, base)}


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_evaluate_scores_every_item_and_repeats_exactly(world):
    first = evaluate(world["run"], ITEMS, params=PARAMS, batch_size=2, progress=False)
    assert first.label == str(world["run"]) and "adapter" in first.description
    assert [row["line"] for row in first.per_example] == [1, 2, 4]
    row = first.per_example[0]
    assert row["question"] == "What is the weather in Paris?" and row["reference"] == "It is sunny and 21 degrees."
    assert set(METRICS) <= set(row) and "covered" not in row
    assert row["format_valid"] is None and first.per_example[2]["format_valid"] in (0.0, 1.0)
    assert set(first.aggregates) == set(METRICS)
    assert first.aggregates["facts_recall"]["n"] == 1 and first.aggregates["answer_tokens"]["n"] == 3
    assert first.aggregates["format_valid"]["n"] == 1
    agg = first.aggregates["token_f1"]
    assert agg["low"] <= agg["mean"] <= agg["high"]
    assert math.isfinite(first.loss) and first.loss > 0 and first.perplexity == pytest.approx(math.exp(first.loss))

    second = evaluate(world["run"], ITEMS, params=PARAMS, batch_size=3, progress=False)
    assert without_timing(second.per_example) == without_timing(first.per_example)
    assert second.loss == pytest.approx(first.loss, rel=1e-5)
    assert {k: v for k, v in second.aggregates.items() if k not in TIMING} == \
        {k: v for k, v in first.aggregates.items() if k not in TIMING}

    # the answers are the engine's greedy answers, and the adapter matters
    loaded = load_for_inference(world["run"])
    texts = [c.text for c in Engine(loaded.model, loaded.tokenizer).generate([i.messages for i in ITEMS], PARAMS)]
    assert [row["answer"] for row in first.per_example] == texts
    base = evaluate(world["base"], ITEMS, params=PARAMS, with_loss=True, progress=False)
    assert base.loss != pytest.approx(first.loss, rel=1e-4)
    assert evaluate(world["base"], ITEMS[:1], params=PARAMS, with_loss=False, progress=False).perplexity is None


def test_reference_loss_is_the_mean_over_reference_tokens(world):
    loaded = load_for_inference(world["base"])
    conversations = [item.messages for item in ITEMS]
    total, count = 0.0, 0
    with torch.no_grad():
        for item in ITEMS:  # one at a time, no padding, plain logits
            seq = tokenize_example(Example([*item.messages, {"role": "assistant", "content": item.reference}]),
                                   loaded.tokenizer, train_on="last")
            logits = loaded.model(torch.tensor([seq.input_ids])).logits[0, :-1]  # (T-1, V)
            labels = torch.tensor(seq.labels[1:])
            total += float(F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum"))
            count += int((labels != IGNORE_INDEX).sum())
    expected = total / count
    for batch_size in (1, 3):  # right padding must not change it
        got = reference_loss(loaded.model, loaded.tokenizer, conversations, ITEMS, batch_size=batch_size)
        assert got == pytest.approx(expected, rel=1e-5)


class FakeRetriever:
    """Covers questions about the weather; records what it was asked."""

    collection = "fake"

    def __init__(self):
        self.asked = []

    def prepare(self, messages):
        self.asked.append(messages)
        if "weather" not in messages[-1]["content"]:
            return None, []
        wrapped = [*messages[:-1], {"role": "user", "content": "[1] Sunny.\n\n" + messages[-1]["content"]}]
        return wrapped, [{"n": 1, "doc": "w.txt"}]


def test_rag_answers_covered_questions_and_refuses_the_rest(world):
    rag = FakeRetriever()
    result = evaluate(world["run"], ITEMS, params=PARAMS, rag=rag, system="Answer in French.",
                      with_loss=False, progress=False)
    # the system prompt replaced the item's own, or was inserted, before retrieval
    assert [m[0] for m in rag.asked] == [{"role": "system", "content": "Answer in French."}] * 3
    assert [m[1]["role"] for m in rag.asked] == ["user"] * 3
    covered, *refused = result.per_example
    assert covered["retrieved"] and [r["retrieved"] for r in refused] == [False, False]
    assert covered["sources"] == [{"n": 1, "doc": "w.txt"}] and refused[0]["sources"] == []
    assert all(r["answer"] == NOT_COVERED and r["answer_tokens"] == 0.0 and r["latency_s"] is None for r in refused)
    loaded = load_for_inference(world["run"])
    wrapped, _ = FakeRetriever().prepare(rag.asked[0])
    [expected] = Engine(loaded.model, loaded.tokenizer).generate([wrapped], PARAMS)
    assert covered["answer"] == expected.text
    assert result.aggregates["latency_s"]["n"] == 1 and result.extra["rag"] == "fake"


def test_constrain_json_answers_items_with_a_schema_under_it_and_leaves_the_others(world):
    from onthejob.eval.run import Ask, evaluate_arms

    schema = {"type": "object", "properties": {"sunny": {"type": "boolean"}}, "required": ["sunny"],
              "additionalProperties": False}
    items = [EvalItem(1, ITEMS[0].messages, '{"sunny": true}', json_schema=schema), ITEMS[1]]
    params = SamplingParams(max_new_tokens=24)
    free, bound = (evaluate_arms(world["run"], [Ask("tuned")], items, params=params, with_loss=False, progress=False,
                                 constrain_json=c)[0] for c in (False, True))
    assert free.per_example[0]["format_valid"] == 0.0  # random weights do not write JSON by themselves
    assert bound.per_example[0]["format_valid"] == 1.0
    assert bound.per_example[1]["answer"] == free.per_example[1]["answer"]  # no schema: decoded as before
