"""What a request asks of its answer's shape: tools it may call, JSON it must write.

    shape = answer_shape(tokenizer, tools=specs, tool_choice="auto", parallel=True, json_schema=None)
    prompt = tokenize_prompt(messages, tokenizer, tools=shape.tools)
    content, calls, finish = shape.outcome(text, finish)

Both API surfaces (chat completions and Responses) turn their fields into these arguments, so
tool calls and structured output behave the same on each:

- ``tool_choice`` "none": the tools are left out of the prompt and the answer is text.
- "auto" (the default with tools): the model may answer or call; calls are read back in the
  format it was trained with (generate/tools.py). When a tool is ``strict`` or a JSON format is
  asked for, decoding is constrained to "calls or an answer" (the calls' arguments to their
  schemas, the answer to the JSON format).
- "required" or a named function: decoding is constrained to calls (to that function).
- ``json_schema`` (``{"type": "object"}`` for json_object): the answer must be JSON of it.

A choice naming a function the request does not define, or a schema the grammar library cannot
compile, is an OpenAI-shaped 400 naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from onthejob.generate.constrain import Grammar, GrammarError, json_grammar
from onthejob.generate.tools import ToolSyntax, call_grammar, parse_calls, tool_syntax
from onthejob.serve.protocol import APIError


@dataclass
class Shape:
    tools: list[dict] | None  # what the prompt shows
    syntax: ToolSyntax | None  # read calls back in this syntax; None = text only
    names: set[str]
    grammar: Grammar | None
    parallel: bool

    def outcome(self, text: str, finish: str) -> tuple[str | None, list[dict], str]:
        """(content, tool calls, finish reason) of a finished answer. An answer cut by the length
        limit keeps the calls it completed, and "length" as its reason."""
        if self.syntax is None:
            return text, [], finish
        content, calls = parse_calls(text, self.syntax, self.names)
        if not calls:
            return text, [], finish
        return content, calls if self.parallel else calls[:1], "tool_calls" if finish == "stop" else finish


def answer_shape(tokenizer, *, tools: list[dict] | None, tool_choice, parallel: bool,
                 json_schema: dict | None, choice_param: str = "tool_choice", format_param: str = "response_format") -> Shape:
    """The ``Shape`` for these request fields; ``tool_choice`` is "none" | "auto" | "required" | a
    function name | None (auto with tools). Raises ``APIError`` (400) for what cannot be done."""
    names = {t["function"]["name"] for t in tools or []}
    choice = tool_choice or "auto"
    if choice not in ("none", "auto", "required") and choice not in names:
        defined = ", ".join(sorted(names)) or "none"
        raise APIError(400, f"tool_choice names function {choice!r}, which is not in tools (defined: {defined})",
                       param=choice_param, code="invalid_value")
    if choice == "required" and not tools:
        raise APIError(400, "tool_choice is 'required' but no tools are given", param=choice_param, code="invalid_value")
    try:
        if not tools or choice == "none":
            grammar = json_grammar(json_schema, what=format_param) if json_schema is not None else None
            return Shape(None, None, set(), grammar, parallel)
        syntax = tool_syntax(tokenizer)
        strict = any(t["function"].get("strict") for t in tools)
        grammar = None
        if choice != "auto" or strict or json_schema is not None:
            grammar = call_grammar(tools, syntax, choice=choice, parallel=parallel,
                                   text=json_schema if json_schema is not None else True)
        return Shape(tools, syntax, names, grammar, parallel)
    except GrammarError as e:
        param = format_param if "response" in e.message or format_param in e.message else "tools"
        raise APIError(400, str(e), param=param, code="invalid_schema") from None


def chat_shape(tokenizer, req) -> Shape:
    """The shape a chat completions request (``protocol.ChatRequest``) asks for."""
    choice = req.tool_choice.name() if hasattr(req.tool_choice, "name") else req.tool_choice
    return answer_shape(tokenizer, tools=[t.spec() for t in req.tools] if req.tools else None, tool_choice=choice,
                        parallel=req.parallel_tool_calls, json_schema=format_schema(req.response_format))


def format_schema(response_format) -> dict | None:
    """The JSON schema a response format asks for: json_object is any object; text is none."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return {"type": "object"}
    if response_format.json_schema is None:
        raise APIError(400, "response_format json_schema needs a 'json_schema' object with a 'schema'",
                       param="response_format.json_schema", code="invalid_value")
    return response_format.json_schema.schema_
