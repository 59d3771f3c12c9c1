"""Tool calls, structured output and the Responses API through the official ``openai`` client,
checked against the shapes of OpenAI's API reference, on a tiny model: forced calls
(``tool_choice`` required or named) and JSON formats are decoded under a grammar, so even random
weights give calls and JSON that parse."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from onthejob.serve.config import ServeConfig
from tests.serve.server_helpers import raw, served

KEY = "tool-key"
ORDER_TOOL = {"type": "function", "function": {
    "name": "get_order", "description": "Look up an order by its number",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "maxLength": 8}},
                   "required": ["order_id"], "additionalProperties": False}}}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}},
                                          "required": ["city"], "additionalProperties": False}}}
LEAVE = {"type": "object", "properties": {
    "employee": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}},
                 "required": ["name"], "additionalProperties": False},
    "kind": {"enum": ["annual", "sick"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 9}},
    "required": ["employee", "kind", "days"], "additionalProperties": False}
ASK = [{"role": "user", "content": "Where is my order 7?"}]


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    config = ServeConfig(model=str(world["base"]), adapters={"alpha": str(world["alpha"])}, api_key=KEY,
                         max_tokens=96, feedback_db=tmp_path_factory.mktemp("fb") / "feedback.sqlite")
    with served(config) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)


def test_chat_shapes_follow_the_reference_system_and_multi_turn(client, world):
    from onthejob.generate.engine import Engine
    from onthejob.generate.sampling import SamplingParams
    from onthejob.models.adapters import load_for_inference

    convo = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello."}, {"role": "developer", "content": "Stay polite."},
             {"role": "user", "content": "Where is order 7?"}]
    reply = client.chat.completions.create(model="alpha", messages=convo, temperature=0, max_tokens=8)
    assert reply.object == "chat.completion" and reply.model == "alpha" and isinstance(reply.created, int)
    [choice] = reply.choices
    assert (choice.index, choice.message.role, choice.message.tool_calls) == (0, "assistant", None)
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    loaded = load_for_inference(world["alpha"])
    as_engine = [{**m, "role": "system" if m["role"] == "developer" else m["role"]} for m in convo]
    [alone] = Engine(loaded.model, loaded.tokenizer).generate([as_engine], SamplingParams(max_new_tokens=8))
    assert choice.message.content == alone.text
    chunks = list(client.chat.completions.create(model="alpha", messages=convo, temperature=0, max_tokens=8,
                                                 stream=True, stream_options={"include_usage": True}))
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == choice.finish_reason
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == choice.message.content


def _call_turn(client, stream=False, **kw):
    kw = {"model": "alpha", "messages": ASK, "tools": [ORDER_TOOL, WEATHER_TOOL], "temperature": 0, "max_tokens": 64,
          "tool_choice": {"type": "function", "function": {"name": "get_order"}}, **kw}
    return client.chat.completions.create(stream=stream, **kw)


def test_a_forced_call_comes_back_as_openai_tool_calls_and_the_result_goes_back_in(client):
    reply = _call_turn(client)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_order"
    assert call.id.startswith("call_") and len(call.id) > 10
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, ORDER_TOOL["function"]["parameters"])
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"

    # turn two: the client ran the tool; the model answers in text (tool_choice auto)
    history = ASK + [choice.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"status": "shipped"})}]
    second = client.chat.completions.create(model="alpha", messages=history, tools=[ORDER_TOOL], temperature=0,
                                            max_tokens=8, tool_choice="none")
    assert second.choices[0].finish_reason in ("stop", "length")
    assert second.choices[0].message.tool_calls is None and isinstance(second.choices[0].message.content, str)


def test_streamed_calls_arrive_as_delta_tool_calls_equal_to_the_plain_answer(client):
    plain = _call_turn(client).choices[0].message.tool_calls
    chunks = list(_call_turn(client, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    calls = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    assert [(c.index, c.function.name, c.function.arguments) for c in calls] == \
        [(i, p.function.name, p.function.arguments) for i, p in enumerate(plain)]
    assert all(c.id.startswith("call_") and c.type == "function" for c in calls)
    assert [c.choices[0].finish_reason for c in chunks][-1] == "tool_calls"
    assert not any(c.choices[0].delta.content for c in chunks)  # no call markup leaks as text


def test_required_allows_parallel_calls_and_parallel_false_keeps_one(client):
    for parallel in (True, False):
        reply = _call_turn(client, tool_choice="required", parallel_tool_calls=parallel, max_tokens=64)
        calls = reply.choices[0].message.tool_calls
        assert calls and all(c.function.name in ("get_order", "get_weather") for c in calls)
        assert parallel or len(calls) == 1
        for c in calls:
            schema = (ORDER_TOOL if c.function.name == "get_order" else WEATHER_TOOL)["function"]["parameters"]
            jsonschema.validate(json.loads(c.function.arguments), schema)


def test_json_schema_output_parses_and_validates(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "leave", "schema": LEAVE, "strict": True}}
    for seed in range(3):
        reply = client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "A leave request, please."}], response_format=fmt,
            temperature=1.0, seed=seed, max_tokens=96)
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content), LEAVE)
    reply = client.chat.completions.create(model="alpha", messages=ASK, response_format={"type": "json_object"},
                                           temperature=0, max_tokens=96)
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_tool_and_schema_errors_are_400s_naming_the_field(server):
    cases = [
        ({"tools": [ORDER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice",
         "not in tools"),
        ({"tools": [{"type": "function", "function": {"name": "bad", "parameters": {"type": "objec"}}}]},
         "tools.0.function.parameters", "not a valid JSON Schema"),
        ({"tool_choice": "required"}, "tool_choice", "no tools"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 3}}}},
         "response_format", "not a valid JSON Schema"),
        ({"messages": [{"role": "tool", "tool_call_id": "x", "content": "42"}]}, "messages", "tool result"),
    ]
    for extra, param, words in cases:
        status, body = raw("POST", server.url + "/chat/completions",
                           {"model": "alpha", "messages": ASK, **extra}, key=KEY)
        assert status == 400, (extra, body)
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "invalid_request_error" and words in body["error"]["message"], body
        assert (body["error"]["param"] or "").startswith(param), body


# --- feedback ------------------------------------------------------------------------------------


def test_feedback_on_an_answer_becomes_a_training_example_and_a_pair(client, server, tmp_path):
    from onthejob.data.feedback import from_feedback
    from onthejob.data.readers import read_examples

    answer = client.chat.completions.create(model="alpha", messages=ASK, temperature=0, max_tokens=8)
    given = answer.choices[0].message.content
    stored = client.post("/feedback", cast_to=object, body={
        "response_id": answer.id, "rating": "bad", "correction": "Order 7 shipped on Monday.", "note": "wrong order",
        "reviewer": "hr-lead"})
    assert stored["id"].startswith("fb-") and stored["response_id"] == answer.id and stored["rating"] == "bad"
    with pytest.raises(openai.NotFoundError):
        client.post("/feedback", cast_to=object, body={"response_id": "chatcmpl-unknown", "rating": "good"})
    with pytest.raises(openai.BadRequestError):
        client.post("/feedback", cast_to=object, body={"response_id": answer.id})
    db = server.app.state.ojt.config.feedback_db
    counts = from_feedback(db, tmp_path / "fixes.jsonl", tmp_path / "pairs.jsonl")
    assert counts["examples"] >= 1 and counts["pairs"] >= 1
    rows = [json.loads(line) for line in (tmp_path / "fixes.jsonl").read_text().splitlines()]
    mine = next(r for r in rows if r["source"]["response_id"] == answer.id)
    assert mine["messages"][-1] == {"role": "assistant", "content": "Order 7 shipped on Monday."}
    assert mine["messages"][-2]["content"] == ASK[0]["content"]
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert any(p["non_preferred_output"][0]["content"] == given and
               p["preferred_output"][0]["content"] == "Order 7 shipped on Monday." for p in pairs)
    assert not read_examples(tmp_path / "fixes.jsonl").problems
    assert not read_examples(tmp_path / "pairs.jsonl").problems


# --- the Responses API ---------------------------------------------------------------------------


def test_responses_text_answer_equals_chat(client):
    chat = client.chat.completions.create(model="alpha", messages=[{"role": "system", "content": "Be brief."}, *ASK],
                                          temperature=0, max_tokens=10)
    resp = client.responses.create(model="alpha", instructions="Be brief.", input=ASK[0]["content"], temperature=0,
                                   max_output_tokens=10)
    assert resp.id.startswith("resp_") and resp.object == "response"
    assert resp.output_text == chat.choices[0].message.content
    assert resp.usage.input_tokens == chat.usage.prompt_tokens
    assert resp.usage.output_tokens == chat.usage.completion_tokens
    assert resp.status == ("incomplete" if chat.choices[0].finish_reason == "length" else "completed")
    if resp.status == "incomplete":
        assert resp.incomplete_details.reason == "max_output_tokens"


def test_responses_stream_events_come_in_openai_order(client):
    plain = client.responses.create(model="alpha", input="Hello", temperature=0, max_output_tokens=10)
    events = list(client.responses.create(model="alpha", input="Hello", temperature=0, max_output_tokens=10, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert kinds[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == plain.output_text == events[-1].response.output_text


def test_responses_tool_call_round_trip_streamed_and_not(client):
    tools = [{"type": "function", **ORDER_TOOL["function"]}]
    first = client.responses.create(model="alpha", input=ASK[0]["content"], tools=tools, tool_choice="required",
                                    parallel_tool_calls=False, temperature=0, max_output_tokens=64)
    [call] = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_order" and call.call_id.startswith("call_") and call.status == "completed"
    jsonschema.validate(json.loads(call.arguments), ORDER_TOOL["function"]["parameters"])
    events = list(client.responses.create(model="alpha", input=ASK[0]["content"], tools=tools, tool_choice="required",
                                          parallel_tool_calls=False, temperature=0, max_output_tokens=64, stream=True))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.done" in kinds and kinds[-1] == "response.completed"
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == call.arguments
    # turn two, continued from the kept first answer
    second = client.responses.create(model="alpha", previous_response_id=first.id, tools=tools, temperature=0,
                                     max_output_tokens=8, tool_choice="none",
                                     input=[{"type": "function_call_output", "call_id": call.call_id, "output": "shipped"}])
    assert second.output[0].type == "message" and isinstance(second.output_text, str)


def test_responses_errors(server):
    cases = [({"input": [{"type": "function_call_output", "call_id": "x", "output": "1"}]}, "function_call_output"),
             ({"input": "hi", "tools": [{"type": "web_search"}]}, "function tools only"),
             ({"input": "hi", "previous_response_id": "resp_unknown"}, "previous_response_id")]
    for body, words in cases:
        status, got = raw("POST", server.url + "/responses", {"model": "alpha", **body}, key=KEY)
        assert status in (400, 404) and words in got["error"]["message"], got
