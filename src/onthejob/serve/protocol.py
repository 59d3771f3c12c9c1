"""The OpenAI API's shapes, as far as ``ojt serve`` speaks it: requests, responses, errors.

Requests are validated here (pydantic); fields the server does not use (``user``,
``presence_penalty``, ...) are accepted and ignored, as OpenAI-compatible servers do, so that
existing clients work unchanged. Every error body is OpenAI's:
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from onthejob.data.messages import tool_result_fault
from onthejob.generate.constrain import GrammarError, check_schema

MAX_N = 8  # choices per request
MAX_STOP = 4  # stop strings per request, as OpenAI
MAX_FEEDBACK_CHARS = 100_000  # a correction or a note
MAX_TOOLS = 128  # functions per request, as OpenAI
FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"  # OpenAI's rule for function names
SEED_RANGE = (-(2**63), 2**63 - 1)  # int64, as OpenAI; choice i gets seed + i, which the engine still takes


class APIError(Exception):
    """An error the HTTP layer sends as it is."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",  # noqa: A002
                 param: str | None = None, code: str | None = None):
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def validation_error(e: ValidationError) -> APIError:
    """A 400 naming the first bad field (its dotted path) and why; the others are listed too."""
    problems = [f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()]
    first = e.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    return APIError(400, "; ".join(problems), param=param, code="invalid_value")


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="the base model, an adapter or a RAG collection (GET /v1/models)")
    n: int = Field(1, ge=1, le=MAX_N)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > MAX_STOP or any(not s for s in stops):
            raise ValueError(f"give at most {MAX_STOP} non-empty stop strings")
        return stops

    def stops(self) -> list[str]:
        return list(self.stop or [])


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class Function(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _schema(cls, v):
        if v is not None:
            try:
                check_schema(v, "parameters")
            except GrammarError as e:
                raise ValueError(str(e)) from None
        return v


class Tool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = "function"
    function: Function

    def spec(self) -> dict[str, Any]:
        return {"type": "function", "function": self.function.model_dump(exclude_none=True)}


class CalledFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str = Field(description="the arguments as a JSON string, as the model wrote them")


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class NamedChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = "function"
    function: dict[str, str]  # {"name": ...}

    def name(self) -> str | None:
        return self.function.get("name")


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field("response", max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _text_only(cls, v):
        if isinstance(v, list) and any(part.get("type") != "text" for part in v):
            raise ValueError("only text content parts are supported")
        return v

    def as_dict(self) -> dict[str, Any]:
        """Plain text content: text parts joined; a developer message is a system message."""
        content = self.content
        if isinstance(content, list):
            content = "".join(str(part.get("text", "")) for part in content)
        role = "system" if self.role == "developer" else self.role
        out: dict[str, Any] = {"role": role, "content": content or ""}
        if self.tool_calls and role == "assistant":
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if role == "tool" and self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


class ChatRequest(_Request):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | NamedChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None

    @field_validator("messages")
    @classmethod
    def _tool_results_answer_calls(cls, messages):
        for i, m in enumerate(messages):
            if m.role == "tool" and (fault := tool_result_fault(messages[i - 1].as_dict() if i else None)):
                raise ValueError(f"message {i} is a tool result, but {fault}")
        return messages

    def limit(self) -> tuple[int | None, str]:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"


class CompletionRequest(_Request):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for completions

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v):
        if isinstance(v, list):
            if len(v) != 1 or not isinstance(v[0], str):
                raise ValueError("give one prompt string (lists of prompts or of token ids are not supported)")
            return v[0]
        return v


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"


class FeedbackRequest(BaseModel):
    """A judgement of one answer the server gave (POST /v1/feedback)."""

    model_config = ConfigDict(extra="forbid")

    response_id: str = Field(max_length=128, description="the id of the chat completion or response judged")
    rating: Literal["good", "bad"] | None = None
    correction: str | None = Field(None, max_length=MAX_FEEDBACK_CHARS, description="the answer it should have given")
    note: str | None = Field(None, max_length=MAX_FEEDBACK_CHARS)
    reviewer: str | None = Field(None, max_length=256)

    @field_validator("note", "correction")
    @classmethod
    def _not_blank(cls, v):
        return v if v is None or v.strip() else None

    def model_post_init(self, _context) -> None:
        if self.rating is None and self.correction is None and self.note is None:
            raise ValueError("give a rating (good or bad), a correction or a note")


class AdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the model name requests will use")
    path: str = Field(description="a run or adapter folder inside one of the adapter folders")


# --- responses ----------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_response(rid: str, model: str, choices: list[tuple[str, str]], prompt: int, completion: int,
                  calls: list[list[dict]] | None = None) -> dict:
    """A chat.completion; ``calls[i]``: choice i's tool calls (its content is then None when empty)."""
    messages = []
    for i, (text, _finish) in enumerate(choices):
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls and calls[i]:
            message = {"role": "assistant", "content": text or None, "tool_calls": calls[i]}
        messages.append(message)
    return {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [
            {"index": i, "message": message, "finish_reason": finish, "logprobs": None}
            for i, (message, (_text, finish)) in enumerate(zip(messages, choices))
        ],
        "usage": usage(prompt, completion),
    }


def chat_chunk(rid: str, model: str, created: int, index: int, delta: dict, finish: str | None) -> dict:
    return {
        "id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def completion_response(rid: str, model: str, choices: list[tuple[str, str]], prompt: int, completion: int) -> dict:
    return {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [
            {"index": i, "text": text, "finish_reason": finish, "logprobs": None}
            for i, (text, finish) in enumerate(choices)
        ],
        "usage": usage(prompt, completion),
    }


def completion_chunk(rid: str, model: str, created: int, index: int, text: str, finish: str | None) -> dict:
    return {
        "id": rid, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": index, "text": text, "finish_reason": finish, "logprobs": None}],
    }


def embedding_response(model: str, vectors: list[list[float]], tokens: int, encoding: str) -> dict:
    def encode(v: list[float]):
        if encoding == "base64":  # little-endian float32, as OpenAI sends it
            return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
        return v

    return {
        "object": "list", "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_card(name: str, created: int, kind: str, source: str, base: str | None = None) -> dict:
    """A /v1/models entry; beyond OpenAI's fields, what the name is: ``kind`` (base, adapter, rag,
    embedding), ``source`` (the model, adapter folder or collection) and the ``base`` it runs on."""
    card = {"id": name, "object": "model", "created": created, "owned_by": "onthejob", "kind": kind, "source": source}
    return card | ({"base": base} if base else {})


_Request.model_rebuild()
ChatRequest.model_rebuild()
CompletionRequest.model_rebuild()
