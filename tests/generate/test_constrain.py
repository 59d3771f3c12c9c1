"""Constrained decoding: every answer parses and validates, whatever the weights, and the mask
changes nothing the grammar allows."""

from __future__ import annotations

import json

import jsonschema
import pytest

from onthejob.generate.constrain import GrammarError, json_grammar, lark_grammar
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams
from tests.runs import lively_model
from tests.tiny import tiny_tokenizer

SCHEMA = {"type": "object", "properties": {
    "team": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}, "required": ["name"],
             "additionalProperties": False},
    "kind": {"enum": ["annual", "sick", "parental"]},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3}},
    "required": ["team", "kind", "tags"], "additionalProperties": False}
ASK = [[{"role": "user", "content": f"Question {i}: a leave request?"}] for i in range(6)]


@pytest.fixture(scope="module")
def engine():
    tok = tiny_tokenizer("chatml")
    return Engine(lively_model(tok), tok)


def test_answers_under_a_schema_parse_and_validate_greedy_and_sampled(engine):
    grammar = json_grammar(SCHEMA)
    for params in (SamplingParams(max_new_tokens=120), SamplingParams(max_new_tokens=120, temperature=1.0, seed=3)):
        for c in engine.generate(ASK, params, grammars=[grammar] * len(ASK), batch_size=3):
            assert c.finish_reason == "stop", c.text
            jsonschema.validate(json.loads(c.text), SCHEMA)
            assert c.text == json.dumps(json.loads(c.text), ensure_ascii=False)  # json.dumps' spacing, nothing else


def test_rows_without_a_grammar_beside_constrained_ones_answer_as_alone(engine):
    params = SamplingParams(max_new_tokens=16)
    alone = engine.generate(ASK[:2], params)
    mixed = engine.generate(ASK[:2] + ASK[:2], params, grammars=[None, None, json_grammar(None), json_grammar(None)])
    assert [c.text for c in mixed[:2]] == [c.text for c in alone]
    assert all(isinstance(json.loads(c.text), dict) for c in mixed[2:] if c.finish_reason == "stop")


def test_a_stream_under_a_grammar_equals_the_whole_answer(engine):
    grammar = lark_grammar('start: "yes" | "no"', what="a choice")
    [whole] = engine.generate(ASK[:1], SamplingParams(max_new_tokens=8), grammars=[grammar])
    assert whole.text in ("yes", "no") and whole.finish_reason == "stop"
    assert "".join(engine.stream(ASK[0], SamplingParams(max_new_tokens=8), grammar=grammar)) == whole.text


@pytest.mark.parametrize("schema, words", [
    ({"type": "objec"}, "not a valid JSON Schema at type"),
    ({"type": "object", "properties": {"a": {"$ref": "#/nope"}}}, "cannot be used for constrained decoding"),
    ([1, 2], "must be a JSON object"),
])
def test_bad_schemas_are_grammar_errors_that_say_what_is_wrong(schema, words):
    with pytest.raises(GrammarError, match=words):
        json_grammar(schema)
