"""Tool calls read back in the format the model was trained with, streamed without leaking
markup, and forced by a grammar that keeps the arguments to their schemas."""

from __future__ import annotations

import json

import jsonschema

from onthejob.data.template import inline_tools
from onthejob.generate.engine import Engine
from onthejob.generate.sampling import SamplingParams
from onthejob.generate.tools import HERMES, ToolStream, call_grammar, parse_calls, tool_syntax
from tests.runs import lively_model
from tests.tiny import tiny_tokenizer

TOOL = {"type": "function", "function": {"name": "get_order", "parameters": {
    "type": "object", "properties": {"order_id": {"type": "string", "maxLength": 6}}, "required": ["order_id"],
    "additionalProperties": False}}}
NATIVE = (  # a Qwen-like template with its own tool syntax
    "{%- if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{%- endif %}"
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content or '' }}"
    "{%- for c in m.tool_calls or [] %}<tool_call>\n{\"name\": \"{{ c.function.name }}\", \"arguments\": "
    "{{ c.function.arguments }}}\n</tool_call>{%- endfor %}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}")
MISTRALISH = (
    "{%- if tools %}[TOOLS]{{ tools | tojson }}[/TOOLS]{%- endif %}"
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n{%- if m.tool_calls %}[TOOL_CALLS][{%- for c in m.tool_calls %}"
    "{\"name\": \"{{ c.function.name }}\", \"arguments\": {{ c.function.arguments }}}{{ ', ' if not loop.last }}"
    "{%- endfor %}]{%- else %}{{ m.content }}{%- endif %}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}")


def _with_template(template):
    tok = tiny_tokenizer("chatml")
    tok.chat_template = template
    return tok


def test_the_syntax_is_read_off_the_template():
    assert tool_syntax(tiny_tokenizer("chatml")) == HERMES  # no tool support: what training inlines
    native = tool_syntax(_with_template(NATIVE))
    assert (native.open.strip(), native.close.strip(), native.each) == ("<tool_call>", "</tool_call>", True)
    listed = tool_syntax(_with_template(MISTRALISH))
    assert (listed.open, listed.close, listed.sep, listed.each) == ("[TOOL_CALLS][", "]", ", ", False)


def test_what_training_writes_parses_back_to_the_calls():
    calls = [{"id": "a", "type": "function", "function": {"name": "get_order", "arguments": '{"order_id": "7"}'}},
             {"id": "b", "type": "function", "function": {"name": "get_order", "arguments": '{"order_id": "8"}'}}]
    [_, turn] = inline_tools([{"role": "user", "content": "x"}, {"role": "assistant", "content": "Let me look.",
                                                                   "tool_calls": calls}], None)
    content, parsed = parse_calls(turn["content"], HERMES, {"get_order"})
    assert content == "Let me look."
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed] == \
        [("get_order", {"order_id": "7"}), ("get_order", {"order_id": "8"})]
    assert all(c["id"].startswith("call_") for c in parsed)
    listed = tool_syntax(_with_template(MISTRALISH))
    assert len(parse_calls('[TOOL_CALLS][{"name": "get_order", "arguments": {}}, {"name": "get_order", "arguments": {}}]',
                           listed, {"get_order"})[1]) == 2


def test_unknown_functions_and_plain_text_are_content():
    text = '<tool_call>\n{"name": "launch_rockets", "arguments": {}}\n</tool_call>'
    assert parse_calls(text, HERMES, {"get_order"}) == (text, [])
    assert parse_calls("Your order shipped.", HERMES, {"get_order"}) == ("Your order shipped.", [])


def test_a_stream_holds_back_call_markup_and_shows_the_rest():
    pieces = ["Let me", " check <", "tool_call>\n{\"name\": \"get_order\", ", '"arguments": {}}\n</tool_call>']
    stream = ToolStream(HERMES)
    shown = "".join(stream.push(p) for p in pieces)
    _, calls = parse_calls("".join(pieces), HERMES, {"get_order"})
    assert (shown + stream.rest(called=bool(calls)), len(calls)) == ("Let me check", 1)
    plain = ToolStream(HERMES)
    shown = "".join(plain.push(p) for p in ["a <b> ", "<to", "day"])
    assert shown + plain.rest(called=False) == "a <b> <today"


def test_forced_calls_from_random_weights_follow_the_schema():
    tok = tiny_tokenizer("chatml")
    engine = Engine(lively_model(tok), tok)
    grammar = call_grammar([TOOL], HERMES, choice="get_order", parallel=False)
    asks = [[{"role": "user", "content": f"order {i}?"}] for i in range(4)]
    for c in engine.generate(asks, SamplingParams(max_new_tokens=60, temperature=1.0, seed=1), tools=[TOOL],
                             grammars=[grammar] * 4):
        _, [call] = parse_calls(c.text, HERMES, {"get_order"})
        jsonschema.validate(json.loads(call["function"]["arguments"]), TOOL["function"]["parameters"])


def test_strict_auto_gives_text_or_calls_whose_arguments_follow_the_schema():
    tok = tiny_tokenizer("chatml")
    engine = Engine(lively_model(tok), tok)
    grammar = call_grammar([TOOL], HERMES, choice="auto", parallel=False)
    asks = [[{"role": "user", "content": f"order {i}?"}] for i in range(8)]
    outs = engine.generate(asks, SamplingParams(max_new_tokens=60, temperature=1.5, seed=4), tools=[TOOL],
                           grammars=[grammar] * 8)
    for c in outs:
        content, calls = parse_calls(c.text, HERMES, {"get_order"})
        if calls:
            jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), TOOL["function"]["parameters"])
        else:
            assert not c.text.lstrip().startswith("<")  # the text branch cannot begin a malformed call
