"""The Responses API (``POST /v1/responses``) as a second surface over the same engine.

    client.responses.create(model="support", instructions="Be brief.", input="Where is order 7?", tools=[...])

A request becomes the chat messages and answer shape the chat endpoint uses (``instructions`` a
system message first, ``input`` text or items: messages, ``function_call`` and
``function_call_output``; ``previous_response_id`` continues a kept answer), so both surfaces
answer alike. ``ResponseBuilder`` writes what comes back: the response object, or its stream of
server-sent events in OpenAI's order (``response.created``, ``response.in_progress``, per output
item ``output_item.added`` ... ``output_item.done``, with ``content_part`` and
``output_text.delta`` events for text and ``function_call_arguments`` events for calls, then
``response.completed``, or ``response.incomplete`` when ``max_output_tokens`` cut the answer).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from onthejob.data.messages import tool_result_fault
from onthejob.generate.sampling import SamplingParams
from onthejob.serve.protocol import FUNCTION_NAME, MAX_TOOLS, Function, JsonSchemaFormat
from onthejob.serve.shape import Shape, answer_shape

MAX_ITEMS = 4096  # input items per request


class FunctionTool(Function):
    type: Literal["function"] = "function"

    def spec(self) -> dict[str, Any]:
        return {"type": "function", "function": self.model_dump(exclude_none=True, exclude={"type"})}


class TextFormat(JsonSchemaFormat):
    type: Literal["text", "json_object", "json_schema"] = "text"


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: TextFormat = Field(default_factory=TextFormat)


class NamedTool(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    name: str = Field(pattern=FUNCTION_NAME)


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[dict[str, Any]] = Field(max_length=MAX_ITEMS)
    instructions: str | None = None
    tools: list[FunctionTool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedTool | None = None
    parallel_tool_calls: bool = True
    text: TextOptions | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool = False
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None

    @field_validator("tools", mode="before")
    @classmethod
    def _functions_only(cls, tools):
        for i, t in enumerate(tools if isinstance(tools, list) else []):
            if isinstance(t, dict) and t.get("type") != "function":
                raise ValueError(f"tool {i} is of type {t.get('type')!r}: this server runs function tools only")
        return tools

    @model_validator(mode="after")
    def _readable_input(self):
        # raises ValueError naming the bad item; a continued conversation is checked with its history
        self.messages(None if self.previous_response_id else [])
        return self

    def messages(self, history: list[dict] | None) -> list[dict[str, Any]]:
        """The conversation to answer: ``history`` (a previous response's messages and answer;
        None = not known yet), new ``instructions`` in place of its system message, the input items."""
        out = list(history or [])
        if self.instructions:
            out = [{"role": "system", "content": self.instructions}, *(out[1:] if out and out[0]["role"] == "system" else out)]
        items = [{"type": "message", "role": "user", "content": self.input}] if isinstance(self.input, str) else self.input
        for i, item in enumerate(items):
            out = _add_item(out, item, i, known=history is not None)
        return out

    def shape(self, tokenizer) -> Shape:
        fmt = (self.text or TextOptions()).format
        schema = None if fmt.type == "text" else ({"type": "object"} if fmt.type == "json_object" else fmt.schema_)
        choice = self.tool_choice.name if isinstance(self.tool_choice, NamedTool) else self.tool_choice
        return answer_shape(tokenizer, tools=[t.spec() for t in self.tools] if self.tools else None, tool_choice=choice,
                            parallel=self.parallel_tool_calls, json_schema=schema, format_param="text.format")

    def sampling(self, max_new: int) -> SamplingParams:
        return SamplingParams(max_new_tokens=max_new, temperature=1.0 if self.temperature is None else self.temperature,
                              top_p=1.0 if self.top_p is None else self.top_p)


def _add_item(out: list[dict], item: Any, i: int, *, known: bool = True) -> list[dict]:
    if not isinstance(item, dict):
        raise ValueError(f"input item {i} must be an object")
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "system", "developer", "assistant"):
            raise ValueError(f"input item {i}: role {role!r} (use user, system, developer or assistant)")
        return [*out, {"role": "system" if role == "developer" else role, "content": _text(item.get("content"), i)}]
    if kind == "function_call":
        call = {"id": _str(item, "call_id", i), "type": "function",
                "function": {"name": _str(item, "name", i), "arguments": _str(item, "arguments", i)}}
        if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls"):  # parallel calls: one message
            return [*out[:-1], {**out[-1], "tool_calls": [*out[-1]["tool_calls"], call]}]
        return [*out, {"role": "assistant", "content": "", "tool_calls": [call]}]
    if kind == "function_call_output":
        fault = tool_result_fault(out[-1] if out else None) if known or out else None
        if fault:
            raise ValueError(f"input item {i} is a function_call_output, but {fault}")
        output = item.get("output")
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        return [*out, {"role": "tool", "content": text, "tool_call_id": _str(item, "call_id", i)}]
    raise ValueError(f"input item {i} is of type {kind!r}: use message, function_call or function_call_output")


def _text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") in ("input_text", "output_text", "text")
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise ValueError(f"input item {i}: content must be text or a list of input_text parts")


def _str(item: dict, key: str, i: int) -> str:
    if not isinstance(item.get(key), str):
        raise ValueError(f"input item {i} ({item.get('type')}) needs {key!r} as a string")
    return item[key]


def _hex() -> str:
    return uuid.uuid4().hex[:24]


class ResponseBuilder:
    """One answer's response object and stream events."""

    def __init__(self, req: ResponsesRequest, model: str, shape: Shape, prompt_tokens: int):
        self.req, self.model, self.shape, self.prompt_tokens = req, model, shape, prompt_tokens
        self.id, self.msg_id, self.created = f"resp_{_hex()}", f"msg_{_hex()}", int(time.time())
        self.seq, self.text, self.started_text = 0, "", False

    def body(self, status: str, output: list[dict], tokens: int | None = None, reason: str | None = None) -> dict:
        req = self.req
        choice = req.tool_choice.model_dump() if isinstance(req.tool_choice, NamedTool) else (req.tool_choice or "auto")
        fmt = (req.text or TextOptions()).format.model_dump(by_alias=True, exclude_none=True)
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status, "model": self.model,
            "output": output, "error": None,
            "incomplete_details": {"reason": reason} if reason else None,
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "temperature": 1.0 if req.temperature is None else req.temperature,
            "top_p": 1.0 if req.top_p is None else req.top_p,
            "tools": [t.model_dump(exclude_none=True) for t in req.tools or []], "tool_choice": choice,
            "parallel_tool_calls": req.parallel_tool_calls, "text": {"format": fmt},
            "previous_response_id": req.previous_response_id, "metadata": req.metadata or {},
            "usage": None if tokens is None else {
                "input_tokens": self.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": tokens, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.prompt_tokens + tokens},
        }

    def finished(self, outcome: tuple[str | None, list[dict], str], tokens: int) -> dict:
        content, calls, finish = outcome
        output = ([self._message(content or "", "completed")] if content or not calls else []) + [
            self._call(c, "completed") for c in calls]
        reason = "max_output_tokens" if finish == "length" else None
        return self.body("incomplete" if reason else "completed", output, tokens, reason)

    # --- the stream ------------------------------------------------------------------------------

    def opening(self) -> list[str]:
        return [self._event("response.created", response=self.body("in_progress", [])),
                self._event("response.in_progress", response=self.body("in_progress", []))]

    def text_delta(self, delta: str) -> list[str]:
        if not delta:
            return []
        lines = [] if self.started_text else self._open_message()
        self.text += delta
        return [*lines, self._event("response.output_text.delta", item_id=self.msg_id, output_index=0,
                                    content_index=0, delta=delta, logprobs=[])]

    def closing(self, outcome: tuple[str | None, list[dict], str], tokens: int) -> list[str]:
        content, calls, _finish = outcome
        lines = []
        if not self.started_text and (content or not calls):
            lines += self._open_message()
        index = 0
        if self.started_text:
            part = {"type": "output_text", "text": self.text, "annotations": []}
            lines += [self._event("response.output_text.done", item_id=self.msg_id, output_index=0, content_index=0,
                                  text=self.text, logprobs=[]),
                      self._event("response.content_part.done", item_id=self.msg_id, output_index=0, content_index=0,
                                  part=part),
                      self._event("response.output_item.done", output_index=0, item=self._message(self.text, "completed"))]
            index = 1
        for j, call in enumerate(calls, start=index):
            item = self._call(call, "in_progress")
            args = call["function"]["arguments"]
            lines += [self._event("response.output_item.added", output_index=j, item={**item, "arguments": ""}),
                      self._event("response.function_call_arguments.delta", item_id=item["id"], output_index=j, delta=args),
                      self._event("response.function_call_arguments.done", item_id=item["id"], output_index=j,
                                  arguments=args, name=item["name"]),
                      self._event("response.output_item.done", output_index=j, item={**item, "status": "completed"})]
        final = self.finished((self.text if self.started_text else content, calls, outcome[2]), tokens)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return [*lines, self._event(kind, response=final)]

    def failed(self, error) -> str:
        body = self.body("failed", [])
        body["error"] = {"code": error.code or "server_error", "message": error.message}
        return self._event("response.failed", response=body)

    def _open_message(self) -> list[str]:
        self.started_text = True
        return [self._event("response.output_item.added", output_index=0, item=self._message("", "in_progress", parts=False)),
                self._event("response.content_part.added", item_id=self.msg_id, output_index=0, content_index=0,
                            part={"type": "output_text", "text": "", "annotations": []})]

    def _message(self, text: str, status: str, *, parts: bool = True) -> dict:
        content = [{"type": "output_text", "text": text, "annotations": []}] if parts else []
        return {"type": "message", "id": self.msg_id, "status": status, "role": "assistant", "content": content}

    def _call(self, call: dict, status: str) -> dict:
        return {"type": "function_call", "id": f"fc_{call['id'].removeprefix('call_')}", "call_id": call["id"],
                "name": call["function"]["name"], "arguments": call["function"]["arguments"], "status": status}

    def _event(self, kind: str, **fields) -> str:
        body = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return f"event: {kind}\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"
