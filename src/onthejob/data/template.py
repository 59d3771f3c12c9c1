"""Render examples through the model's own chat template and mark the tokens to train on.

Training calls ``tokenize_example(example, tokenizer, train_on="all")`` for every example;
generation calls ``tokenize_prompt`` and stops on ``end_of_turn_ids``.

How the supervised span of an assistant turn is found, for templates with or without
``{% generation %}`` markers (SmolLM2's has none):

1. Render the whole conversation to text once.
2. For assistant turn i, render ``messages[:i]`` with the generation prompt and ``messages[:i+1]``
   without; when the full text starts with both, the characters between them are the turn: its
   content plus whatever closes it (``<|im_end|>\\n``, ``<|eot_id|>``). Trailing whitespace is
   dropped, so the end-of-turn token is learned and ChatML's newline after it is not.
3. Templates that do not render prefix-consistently (an assistant message first, Qwen3-style
   reasoning that only shows in the last turn) fall back to a sentinel: render the conversation
   with turn i's content replaced by a marker; the text before and after the marker must match
   the full text, which locates the content; the span then runs to the end-of-turn token after it.
4. Tokenize the full text once with offsets (``add_special_tokens=False``: templates write BOS
   themselves) and label a token when its first character lies inside a span.

Tool use on templates without tool support (SmolLM2's plain ChatML ignores ``tools`` and
``tool_calls``): a probe renders a tool and a tool call and looks for their names; when either is
missing, ``inline_tools`` writes them into the text Hermes-style before rendering, for training and
generation alike (``<tool_call>`` JSON in the assistant turn, a ``<tools>`` list in the system
message). The call text is then assistant content, so it is supervised like any reply.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from typing import Any

from onthejob.data.files import loads
from onthejob.data.schema import Example
from onthejob.errors import DataError

IGNORE_INDEX = -100  # label value the loss skips (torch.nn.CrossEntropyLoss's ignore_index)
TRAIN_ON = ("all", "last", "sequence")
_SENTINEL = "\x00ojt-turn-content\x00"  # replaces one turn's content in the sentinel fallback
_PROBE_CONTENT = "ojt probe reply 7"
_PROBE_TOOL, _PROBE_CALL = "ojt_probe_tool_spec", "ojt_probe_tool_call"  # names the probe looks for
TOOLS_PROMPT = (
    "You can call these tools:\n<tools>\n{tools}\n</tools>\n"
    'To call one, answer with <tool_call>{{"name": ..., "arguments": ...}}</tool_call>.'
)


@dataclass
class Tokenized:
    """One example as model input: labels are aligned with input_ids (the loss shifts them)."""

    input_ids: list[int]
    labels: list[int]  # same length; IGNORE_INDEX where the token is not supervised

    @property
    def n_supervised(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class Rendered:
    """The rendered text behind a Tokenized, for previews: offsets[k] is token k's char range."""

    text: str
    offsets: list[tuple[int, int]]
    spans: list[tuple[int, int]]  # supervised char ranges, sorted
    tokenized: Tokenized


@dataclass(frozen=True)
class _Probe:
    eot_token: str | None  # the text of the token that closes an assistant turn
    eot_ids: tuple[int, ...]  # ids that end a turn: that token, then eos if different
    renders_tools: bool  # the template writes both 'tools' and assistant 'tool_calls' into the text


# Probes per tokenizer object, then per chat template (a caller may swap the template).
_PROBES: weakref.WeakKeyDictionary[Any, dict[str, _Probe]] = weakref.WeakKeyDictionary()


def tokenize_example(example: Example, tokenizer, *, train_on: str = "all") -> Tokenized:
    """Token ids and labels for one example; see the module docstring for how spans are found.

    train_on: "all" trains every assistant turn whose weight is not 0; "last" only the final
    assistant turn (not at all if its weight is 0); "sequence" every token. Token 0 is never
    supervised: nothing precedes it to predict it from.
    """
    return render_example(example, tokenizer, train_on=train_on).tokenized


def render_example(example: Example, tokenizer, *, train_on: str = "all") -> Rendered:
    """Like tokenize_example, keeping the text, token offsets and spans (for previews)."""
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {TRAIN_ON}, not {train_on!r}")
    example = _for_template(example, tokenizer)
    messages, tools = example.messages, example.tools
    full = _render(tokenizer, messages, tools, False, example.where)
    if tools:
        _check_tools_rendered(tools, full, example.where)
    spans: list[tuple[int, int]] = []
    if train_on != "sequence":
        for i in _trained_turns(messages, train_on):
            span = _assistant_span(tokenizer, example, i, full)
            _check_tool_calls_rendered(messages[i], full[span[0] : span[1]], example.where, i)
            spans.append(span)
        spans.sort()
    enc = tokenizer(full, return_offsets_mapping=True, add_special_tokens=False)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    if train_on == "sequence":
        labels = list(ids)
        spans = [(0, len(full))]
    else:
        labels = _labels_from_spans(ids, offsets, spans)
    if labels:
        labels[0] = IGNORE_INDEX
    return Rendered(full, offsets, spans, Tokenized(ids, labels))


def tokenize_prompt(messages: list[dict[str, Any]], tokenizer, tools: list | None = None) -> list[int]:
    """Ids of a conversation followed by the assistant header, ready for generation."""
    messages, tools = _fit_tools(tokenizer, _fill_content(messages), tools)
    text = _render(tokenizer, messages, tools, True, "<prompt>")
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def end_of_turn_ids(tokenizer) -> list[int]:
    """Ids that end an assistant turn (e.g. <|im_end|>, <|eot_id|> then eos); generation stops on them."""
    return list(_probe(tokenizer).eot_ids)


def end_of_turn_token(tokenizer) -> str | None:
    """The text of the token the chat template writes after an assistant turn's content."""
    return _probe(tokenizer).eot_token


def supports_tools(tokenizer) -> bool:
    """Whether the chat template renders 'tools' and 'tool_calls' itself (else they are inlined)."""
    return _probe(tokenizer).renders_tools


def inline_tools(messages: list[dict[str, Any]], tools: list | None) -> list[dict[str, Any]]:
    """Tool use written into plain text, Hermes-style, for a template that cannot render it.

    Each assistant tool call becomes ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``
    after the message's content; the tools, one JSON per line, go into the system message (a new
    one at the start when there is none). Tool results stay tool messages: ChatML renders any role.
    """
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = "\n".join(map(_tool_call_text, m["tool_calls"]))
            m = {k: v for k, v in m.items() if k != "tool_calls"}
            m["content"] = f"{m['content']}\n{calls}" if m.get("content") else calls
        out.append(m)
    if tools:
        block = TOOLS_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        if out and out[0].get("role") == "system":
            system = out[0].get("content")
            out[0] = {**out[0], "content": f"{system}\n\n{block}" if system else block}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


def _tool_call_text(call: dict[str, Any]) -> str:
    fn = call.get("function", call)
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = loads(args)
        except ValueError:
            pass  # not plain JSON: keep the string as written
    return "<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False) + \
        "\n</tool_call>"


# --- rendering -------------------------------------------------------------------------------


def _render(tokenizer, messages, tools, add_generation_prompt: bool, where: str) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            f"{where}: the tokenizer has no chat template",
            fix="use an instruct/chat model, or set tokenizer.chat_template",
        )
    try:
        return tokenizer.apply_chat_template(
            messages, tools=tools or None, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as e:  # jinja2 raise_exception(), TypeError on None content, ...
        raise DataError(
            f"{where}: the model's chat template cannot render this example: {type(e).__name__}: {e}",
            fix="check the roles and fields this model's template supports (e.g. tool messages)",
        ) from e


def _for_template(example: Example, tokenizer) -> Example:
    """The example as the template will render it: content filled in, tools inlined if need be."""
    messages, tools = _fit_tools(tokenizer, _fill_content(example.messages), example.tools)
    if messages is example.messages and tools is example.tools:
        return example
    return Example(messages, tools, example.source, example.line)


def _fit_tools(tokenizer, messages: list[dict[str, Any]], tools: list | None):
    """(messages, tools), with tool use inlined when the template cannot render it."""
    if not (tools or any(m.get("tool_calls") for m in messages)) or supports_tools(tokenizer):
        return messages, tools
    return inline_tools(messages, tools), None


def _fill_content(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give content-less messages (tool-call turns) content "": most templates index it unguarded."""
    if all(m.get("content") is not None for m in messages):
        return messages
    return [m if m.get("content") is not None else {**m, "content": ""} for m in messages]


def _trained_turns(messages: list[dict[str, Any]], train_on: str) -> list[int]:
    assistant = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if train_on == "last":
        assistant = assistant[-1:]
    return [i for i in assistant if messages[i].get("weight", 1) != 0]


def _assistant_span(tokenizer, example: Example, i: int, full: str) -> tuple[int, int]:
    """Char range [a, b) of assistant turn i in full: content + end-of-turn token, no trailing space."""
    span = _prefix_span(tokenizer, example, i, full) or _sentinel_span(tokenizer, example, i, full)
    if span is None:
        raise DataError(
            f"{example.where}: cannot locate assistant message {i} in the text the chat template "
            "renders (the template drops or rewrites it)",
            fix="use a model whose chat template renders every assistant message",
        )
    a, b = span
    while b > a and full[b - 1].isspace():
        b -= 1
    return a, b


def _prefix_span(tokenizer, example: Example, i: int, full: str) -> tuple[int, int] | None:
    messages, tools = example.messages, example.tools
    try:
        before = _render(tokenizer, messages[:i], tools, True, example.where)
        through = _render(tokenizer, messages[: i + 1], tools, False, example.where)
    except DataError:  # e.g. a template that cannot render an empty or tool-ending conversation
        return None
    if len(before) < len(through) and through.startswith(before) and full.startswith(through):
        return len(before), len(through)
    return None


def _sentinel_span(tokenizer, example: Example, i: int, full: str) -> tuple[int, int] | None:
    messages = list(example.messages)
    messages[i] = {**messages[i], "content": _SENTINEL}
    try:
        marked = _render(tokenizer, messages, example.tools, False, example.where)
    except DataError:
        return None
    pos = marked.find(_SENTINEL)
    if pos < 0:
        return None
    before, after = marked[:pos], marked[pos + len(_SENTINEL) :]
    content_end = len(full) - len(after)
    if not (full.startswith(before) and full.endswith(after) and len(before) <= content_end):
        return None
    eot = _probe(tokenizer).eot_token
    end = full.find(eot, content_end) if eot else -1
    return len(before), (end + len(eot) if end >= 0 else content_end)


def _labels_from_spans(ids: list[int], offsets: list[tuple[int, int]], spans) -> list[int]:
    """Label token k with its id when its first char lies in a span; spans sorted, disjoint."""
    labels = [IGNORE_INDEX] * len(ids)
    j = 0
    for k, (start, _end) in enumerate(offsets):
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        if j == len(spans):
            break
        if spans[j][0] <= start:
            labels[k] = ids[k]
    return labels


# --- checks for templates that silently drop tool information --------------------------------


def _tool_name(item: dict[str, Any]) -> str | None:
    fn = item.get("function", item)
    name = fn.get("name") if isinstance(fn, dict) else None
    return name if isinstance(name, str) else None


def _check_tools_rendered(tools: list[dict[str, Any]], full: str, where: str) -> None:
    names = [n for n in map(_tool_name, tools) if n]
    if names and not any(n in full for n in names):
        raise DataError(
            f"{where}: the model's chat template ignores 'tools' (no tool name appears in the "
            "rendered text), so the model would never see the tool definitions",
            fix="use a model whose chat template supports tools, or describe the tools in the system message",
        )


def _check_tool_calls_rendered(message: dict[str, Any], turn_text: str, where: str, i: int) -> None:
    for call in message.get("tool_calls") or []:
        name = _tool_name(call) if isinstance(call, dict) else None
        if name and name not in turn_text:
            raise DataError(
                f"{where}: message {i}: the model's chat template drops 'tool_calls' "
                f"(the call to {name!r} is not in the rendered turn), so training would teach "
                "the model to answer with nothing",
                fix="use a model whose chat template supports tool calls, or write the call into 'content'",
            )


# --- per-tokenizer probe ----------------------------------------------------------------------


def _probe(tokenizer) -> _Probe:
    template = getattr(tokenizer, "chat_template", None) or ""
    per_template = _PROBES.setdefault(tokenizer, {})
    if template not in per_template:
        per_template[template] = _run_probe(tokenizer)
    return per_template[template]


def _run_probe(tokenizer) -> _Probe:
    """Find the end-of-turn token: the first special/added token after a probe reply's content."""
    eot_id = None
    messages = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": _PROBE_CONTENT}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # no template, or one that needs a system message: fall back to eos
        text = ""
    content_end = text.rfind(_PROBE_CONTENT) + len(_PROBE_CONTENT)
    if text and content_end >= len(_PROBE_CONTENT):
        enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        control = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
        for tid, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"]):
            if start >= content_end and tid in control:
                eot_id = tid
                break
    if eot_id is None:
        eot_id = tokenizer.eos_token_id
    ids = [t for t in (eot_id, tokenizer.eos_token_id) if t is not None]
    ids = list(dict.fromkeys(ids))  # dedupe, keep order
    token = tokenizer.convert_ids_to_tokens(eot_id) if eot_id is not None else None
    return _Probe(token, tuple(ids), _renders_tools(tokenizer))


def _renders_tools(tokenizer) -> bool:
    """Render a probe tool and tool call; both names must appear for native tool support."""
    tools = [{"type": "function", "function": {
        "name": _PROBE_TOOL, "description": "probe", "parameters": {"type": "object", "properties": {}}}}]
    # A 9-character alphanumeric id: Mistral's templates reject any other.
    call = {"id": "ojtprobe0", "type": "function", "function": {"name": _PROBE_CALL, "arguments": "{}"}}
    convo = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    for messages in (convo, [{"role": "system", "content": "probe"}, *convo]):  # some need a system turn
        try:
            text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
        except Exception:  # a template that rejects tools, or this conversation's shape
            continue
        return _PROBE_TOOL in text and _PROBE_CALL in text
    return False
