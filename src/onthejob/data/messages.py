"""Validate the messages of one record and return them in canonical form (see ``data/schema.py``).

The formats in ``data/readers.py`` call ``chat_messages`` (an OpenAI message list),
``canonical_tool_calls`` and ``record_tools``. Nothing here raises on bad data: each fault goes to
the record's ``Faults`` with its code, message index and a fix, and a message with any fault
comes back as None, so the record is reported, never half-converted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from onthejob.data.files import loads
from onthejob.data.schema import MESSAGE_KEYS, ROLES, Problem

# loss_weight is LLaMA-Factory's spelling of weight; we accept it and write weight.
ALLOWED_MESSAGE_KEYS = (*MESSAGE_KEYS, "loss_weight")


@dataclass
class Faults:
    """Collects the faults of one record, so a record reports all of them, not just the first."""

    source: str
    line: int
    problems: list[Problem] = field(default_factory=list)

    def error(self, code: str, message: str, fix: str, index: int | None = None) -> None:
        self.problems.append(Problem("error", code, message, fix, self.source, self.line, index))


def json_kind(value: Any) -> str:
    """The JSON name of a value's type, for messages users read."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def chat_messages(raw: Any, faults: Faults, key: str = "messages") -> list[dict] | None:
    """Validate an OpenAI message list; the valid messages, or None when there is no list."""
    if not isinstance(raw, list) or not raw:
        faults.error("missing_messages_list", f"'{key}' is missing, empty or not a list",
                     f'give the record a non-empty "{key}": [...] list')
        return None
    messages, n_calls = [], 0
    for i, msg in enumerate(raw):
        out = chat_message(msg, i, faults, n_calls)
        if out is not None and out["role"] == "tool" and (fault := tool_result_fault(raw[i - 1] if i else None)):
            faults.error("tool_without_call", f"tool message answers no tool call: {fault}",
                         "put the assistant message with the tool_calls it answers right before it, "
                         "or delete it", i)
        elif out is not None:
            messages.append(out)
            n_calls += len(out.get("tool_calls") or ())
    return messages


def tool_result_fault(previous: Any) -> str | None:
    """Why a tool result cannot come after ``previous`` (a raw or canonical message, None at the
    start), or None when it can: right after an assistant message with tool calls, or after
    another tool result. A result that answers nothing would train the model on an invented call."""
    if previous is None:
        return "no assistant message with tool_calls comes before it"
    role = previous.get("role") if isinstance(previous, dict) else None
    if role in ("tool", "function"):
        return None
    if role == "assistant" and (previous.get("tool_calls") or previous.get("function_call")):
        return None
    what = f"a {role} message" if isinstance(role, str) else json_kind(previous)
    return f"it follows {what}, not an assistant message with tool_calls"


def chat_message(msg: Any, index: int, faults: Faults, n_calls: int = 0) -> dict | None:
    """Validate one OpenAI chat message and return it canonical, or None after reporting faults."""
    if not isinstance(msg, dict):
        faults.error("data_type", f"message is {json_kind(msg)}, not an object",
                     'write each message as {"role": ..., "content": ...}', index)
        return None
    before = len(faults.problems)
    role = "tool" if msg.get("role") == "function" else msg.get("role")  # legacy function role
    out: dict[str, Any] = {"role": role}
    calls = msg.get("tool_calls") or ([msg["function_call"]] if msg.get("function_call") else None)
    if calls is not None:
        out["tool_calls"] = canonical_tool_calls(calls, n_calls)
        if out["tool_calls"] is None:
            faults.error("wrong_type", "tool_calls is not a list of calls with a function name",
                         'use [{"type": "function", "function": {"name": ..., "arguments": "{...}"}}]', index)
    if "role" not in msg:
        faults.error("message_missing_key", "message has no 'role'",
                     "add \"role\": one of " + ", ".join(ROLES), index)
    elif role not in ROLES:
        faults.error("unrecognized_role", f"role {msg['role']!r} is not one of {', '.join(ROLES)}",
                     "use system, user, assistant or tool", index)
    elif calls is not None and role != "assistant":
        faults.error("wrong_type", f"a {role} message cannot carry tool_calls",
                     "put tool calls on an assistant message", index)
    unknown = sorted(set(msg) - set(ALLOWED_MESSAGE_KEYS))
    if unknown:
        faults.error("message_unrecognized_key", f"unrecognized key(s) {unknown}",
                     "allowed keys: " + ", ".join(ALLOWED_MESSAGE_KEYS), index)
    _content(msg, out, calls is not None, index, faults)
    _extras(msg, out, index, faults)
    return out if len(faults.problems) == before else None


def canonical_tool_calls(calls: Any, first_id: int) -> list[dict] | None:
    """OpenAI tool calls (arguments as a JSON string, ids filled in), or None when malformed."""
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for i, call in enumerate(calls, start=first_id):
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return None
        if not isinstance(call.get("id") or "", str):
            return None
        args = fn.get("arguments", {})
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False)
        out.append({"id": call.get("id") or f"call_{i}", "type": "function",
                    "function": {"name": fn["name"], "arguments": args}})
    return out


def record_tools(record: dict, faults: Faults) -> list[dict] | None:
    """The record's "tools" as OpenAI tool specs, or None (reporting a fault when unreadable)."""
    try:
        return _tools(record.get("tools"))
    except ValueError as e:
        faults.error("wrong_type", f"tools cannot be read: {e}",
                     'give tools as a list of {"type": "function", "function": {...}}')
        return None


def _tools(tools: Any) -> list[dict] | None:
    """OpenAI tool specs; a bare function spec {"name", ...} is wrapped. Raises ValueError."""
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):
        tools = loads(tools)
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise ValueError("tools must be a list of objects")
    specs = [t if "function" in t else {"type": "function", "function": t} for t in tools]
    for i, spec in enumerate(specs):
        if not (isinstance(spec["function"], dict) and isinstance(spec["function"].get("name"), str)):
            raise ValueError(f"tool {i} has no function name (a string)")
    return specs


def _text(content: Any) -> str | None:
    """A string, or a list of text parts ({"type": "text", "text"|"value": ...}) joined; else None."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text", p.get("value")), str)
        for p in content
    ):
        return "".join(p.get("text", p.get("value")) for p in content)
    return None


def _weight(value: Any) -> int | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    return None


def _content(msg: dict, out: dict, has_calls: bool, index: int, faults: Faults) -> None:
    content = msg.get("content")
    if "content" not in msg and not has_calls:
        faults.error("message_missing_key", "message has no 'content'", "add \"content\": \"...\"", index)
    elif content is None:
        out["content"] = None
        if not has_calls:
            faults.error("missing_content", "content is null", "give the message its text", index)
    elif (text := _text(content)) is None:
        faults.error("wrong_type", f"content is {json_kind(content)}, not a string or a list of text parts",
                     "write the content as a string", index)
    else:
        out["content"] = text


def _extras(msg: dict, out: dict, index: int, faults: Faults) -> None:
    for key in ("weight", "loss_weight"):
        if key in msg and "weight" not in out:
            out["weight"] = _weight(msg[key])
            if out["weight"] is None:
                faults.error("wrong_type", f"{key} is {msg[key]!r}, not 0 or 1",
                             "use 0 (not trained on) or 1 (trained on)", index)
    for key in ("name", "tool_call_id"):
        if msg.get(key) is not None:
            out[key] = msg[key]
            if not isinstance(msg[key], str):
                faults.error("wrong_type", f"{key} must be a string", f"write {key} as a string", index)
