"""Tool calls in generated text: the format a model writes them in, reading them back, forcing them.

    syntax = tool_syntax(tokenizer)                 # how this chat template writes a call
    content, calls = parse_calls(text, syntax, names={"get_order"})
    grammar = call_grammar(tools, syntax, choice="required", parallel=True)

The format is the one the model was trained with, read off its chat template by rendering, as
the training masks are (data/template.py): for a template without tool support, the Hermes-style
``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` that training writes into the
text; for a template with its own syntax, a probe call is rendered and the text around its JSON
(``<tool_call>``, ``[TOOL_CALLS][``, nothing for Llama 3's bare JSON) and the key that holds
the arguments (``arguments``, ``parameters``) are what the model is expected to write.
``ToolStream`` holds back text from where a call may begin, so a stream never shows call markup
as content.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from onthejob.generate.constrain import Grammar, json_rule, lark_grammar

_NAME, _ARG = "ojt_probe_function", "ojt_probe_argument"


@dataclass(frozen=True)
class ToolSyntax:
    """How calls are written: ``open``, JSON objects ``{name_key: ..., args_key: {...}}`` joined by
    ``sep``, then ``close``; ``arguments_as_string`` when the template writes them JSON-encoded."""

    open: str
    close: str
    sep: str = "\n"
    name_key: str = "name"
    args_key: str = "arguments"
    each: bool = True  # open/close wrap each call (Hermes), else the whole list (Mistral)


HERMES = ToolSyntax("<tool_call>\n", "\n</tool_call>")


def tool_syntax(tokenizer) -> ToolSyntax:
    """The call syntax of ``tokenizer``'s chat template: Hermes-style when it has no tool support
    (data/template.py inlines tool use that way), else read off a rendered probe call."""
    from onthejob.data.template import supports_tools

    if not supports_tools(tokenizer):
        return HERMES
    return _probed(tokenizer) or HERMES


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_calls(text: str, syntax: ToolSyntax, names: set[str]) -> tuple[str | None, list[dict]]:
    """(content, OpenAI tool calls) read from generated ``text``; ([text], []) when it holds none.

    Content is the text before the first call (None when empty). A call must name one of
    ``names``; text after the last call (a stray close tag) is dropped."""
    start = _call_start(text, syntax)
    if start < 0:
        return text, []
    rest, calls = text[start + len(syntax.open):], []
    decoder = json.JSONDecoder()
    while True:
        rest = rest.lstrip()
        try:
            obj, end = decoder.raw_decode(rest)
        except ValueError:
            break
        call = _call(obj, syntax, names)
        if call is None:
            break
        calls.append(call)
        rest = _skip(rest[end:], (syntax.close, syntax.sep, syntax.open))
    if not calls:
        return text, []
    content = text[:start].strip()
    return content or None, calls


class ToolStream:
    """Streamed text in, content out: text from where a call may start is held until the end."""

    def __init__(self, syntax: ToolSyntax):
        self.syntax = syntax
        self.text, self.sent = "", 0

    def push(self, delta: str) -> str:
        """Content that can be shown now."""
        self.text += delta
        start = _call_start(self.text, self.syntax)
        end = start if start >= 0 else len(self.text) - _open_prefix(self.text, self.syntax.open)
        end = len(self.text[:end].rstrip())  # whitespace before a call is not content
        out, self.sent = self.text[self.sent : max(end, self.sent)], max(end, self.sent)
        return out

    def rest(self, called: bool) -> str:
        """The content not yet shown, once generation has ended: up to the first call when the
        answer made calls (as ``parse_calls`` found), else all of it. Held-back text never
        passed the start of a call."""
        if not called:
            return self.text[self.sent :]
        return self.text[self.sent : _call_start(self.text, self.syntax)].rstrip()


def call_grammar(tools: list[dict], syntax: ToolSyntax, *, choice: str | None, parallel: bool,
                 text: dict | None | bool = True) -> Grammar:
    """Output that must be tool calls (``choice`` "required" or a function name), or either calls
    or ``text`` ("auto"): ``True`` any text that does not begin like a call, a dict a JSON schema.

    Each call's arguments follow its function's ``parameters`` schema; a named function is called
    once."""
    chosen = [t for t in tools if choice in (None, "auto", "required") or t["function"]["name"] == choice]
    options = [{"type": "object", "properties": {
        syntax.name_key: {"const": t["function"]["name"]},
        syntax.args_key: t["function"].get("parameters") or {"type": "object"},
    }, "required": [syntax.name_key, syntax.args_key], "additionalProperties": False} for t in chosen]
    one = json_rule(options[0] if len(options) == 1 else {"anyOf": options})
    named = choice not in (None, "auto", "required")
    more = f'({_lit(syntax.sep)} call)*' if parallel and not named else ""
    if syntax.each:
        calls = f"calls: call{more}\ncall: {_lit(syntax.open)} obj {_lit(syntax.close)}\n"
    else:
        calls = f"calls: {_lit(syntax.open)} call{more} {_lit(syntax.close)}\ncall: obj\n"
    lark = calls + f"obj: {one}\n"
    if choice in ("auto", None):
        if isinstance(text, dict):
            lark = "start: calls | answer\nanswer: " + json_rule(text) + "\n" + lark
        else:
            first = syntax.open.lstrip()[:1] or "{"
            lark = f"start: calls | TEXT\nTEXT: /[^{_regex_escape(first)}\\s][\\s\\S]*/\n" + lark
    else:
        lark = "start: calls\n" + lark
    what = "the tool definitions" if choice in ("auto", "required", None) else f"tool {choice!r}"
    return lark_grammar(lark, what=what)


# --- helpers -------------------------------------------------------------------------------------


def _call(obj: Any, syntax: ToolSyntax, names: set[str]) -> dict | None:
    if isinstance(obj, list) and len(obj) == 1:  # a list-wrapped single call
        obj = obj[0]
    if not isinstance(obj, dict) or obj.get(syntax.name_key) not in names:
        return None
    args = obj.get(syntax.args_key, obj.get("parameters", {}))
    if not isinstance(args, str):
        args = json.dumps(args, ensure_ascii=False)
    return {"id": new_call_id(), "type": "function", "function": {"name": obj[syntax.name_key], "arguments": args}}


def _call_start(text: str, syntax: ToolSyntax) -> int:
    """Where the first call begins in ``text``, or -1. Without an open marker a call is JSON that
    the whole answer begins with."""
    if syntax.open.strip():
        return text.find(syntax.open.strip())
    stripped = text.lstrip()
    return len(text) - len(stripped) if stripped.startswith(("{", "[")) else -1


def _open_prefix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that begins the call marker (held back meanwhile)."""
    marker = marker.strip()
    if not marker:
        return len(text) if not text.strip() else 0
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0


def _skip(text: str, markers: tuple[str, ...]) -> str:
    changed = True
    while changed:
        changed = False
        text = text.lstrip()
        for m in markers:
            if m.strip() and text.startswith(m.strip()):
                text, changed = text[len(m.strip()):], True
    return text


def _lit(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _regex_escape(ch: str) -> str:
    return "\\" + ch if ch in r"\^]-[{}()|.*+?$/" else ch


def _probed(tokenizer) -> ToolSyntax | None:
    """Read the call syntax off the template: render one and two probe calls, find their JSON."""
    one, two = _rendered_turn(tokenizer, 1), _rendered_turn(tokenizer, 2)
    if one is None or two is None:
        return None
    found = _find_call(one)
    if found is None:
        return None
    start, end, name_key, args_key = found
    first, second = _find_call(two), None
    if first is not None:
        second = _find_call(two, after=first[1])
    if second is None:
        return None
    between, open_ = two[first[1] : second[0]], one[:start].lstrip()  # what precedes is the turn's (empty) content
    close = _turn_tail(one[end:], tokenizer)
    each = bool(open_.strip()) and between.startswith(close) and between.endswith(open_)  # markers per call
    sep = between[len(close) : len(between) - len(open_)] if each else between
    return ToolSyntax(open_, close, sep or "\n", name_key, args_key, each)


def _rendered_turn(tokenizer, n: int) -> str | None:
    """The assistant turn text the template writes for ``n`` probe calls."""
    calls = [{"id": f"ojtprobe{i}", "type": "function",
              "function": {"name": _NAME, "arguments": json.dumps({_ARG: i})}} for i in range(n)]
    tools = [{"type": "function", "function": {"name": _NAME, "description": "probe",
                                               "parameters": {"type": "object", "properties": {_ARG: {"type": "integer"}}}}}]
    user = [{"role": "user", "content": "ping"}]
    try:
        before = tokenizer.apply_chat_template(user, tools=tools, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": "", "tool_calls": calls}],
                                             tools=tools, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that needs another shape: fall back to Hermes
        return None
    return full[len(before):] if full.startswith(before) else None


def _find_call(turn: str, after: int = 0) -> tuple[int, int, str, str] | None:
    """(start, end, name key, arguments key) of the first probe call's JSON at or after ``after``."""
    decoder = json.JSONDecoder()
    at = turn.find(_NAME, after)
    if at < 0:
        return None
    for start in range(at, after - 1, -1):
        if turn[start] != "{":
            continue
        try:
            obj, length = decoder.raw_decode(turn[start:])
        except ValueError:
            continue
        keys = [k for k, v in obj.items() if v == _NAME] if isinstance(obj, dict) else []
        if keys:
            args = [k for k, v in obj.items() if k not in keys]
            return start, start + length, keys[0], args[0] if args else "arguments"
    return None


def _turn_tail(text: str, tokenizer) -> str:
    """What closes the calls: the text up to the end-of-turn token."""
    from onthejob.data.template import end_of_turn_token

    eot = end_of_turn_token(tokenizer)
    if eot and eot in text:
        text = text[: text.index(eot)]
    return text.rstrip()
