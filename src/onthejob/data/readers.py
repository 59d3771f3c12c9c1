"""Read training data in any supported format into canonical examples.

    ojt data convert data.json --out data.jsonl            # format detected
    ojt data convert tickets.csv --map question=user --map answer=assistant --out data.jsonl

Formats live in ``FORMATS``, filled by ``@register_format``; a new format registers exactly as the
built-ins do. A reader never raises on a bad record: it reports each fault as a ``Problem`` (with
the file, 1-based line and message index) and keeps reading, so one run shows every fault. Only a
record with no faults becomes an ``Example``, so later stages can trust the canonical shape. It
raises ``DataError`` only when the file as a whole cannot be read or its format cannot be told.
How files are opened and their JSON decoded (size limits, encodings) is ``data/files.py``.

Codes reported here: ``data_type`` (record is not an object), ``missing_messages_list``,
``message_missing_key``, ``message_unrecognized_key``, ``unrecognized_role``, ``missing_content``
(None content where text is needed), ``missing_field`` (alpaca / prompt-completion key absent),
``wrong_type``, ``tool_without_call`` (a tool result that answers no tool call); the per-message
ones come from ``data/messages.py``, and those of a record that cannot be decoded
(``malformed_json``, ``invalid_utf8``, ``record_too_large``, ``too_deep``, ``number_too_long``,
``lone_surrogate``; the warning ``duplicate_key``) from ``data/files.py``. Checks on well-formed
examples (duplicates, lengths, missing turns) live in ``data/check.py``.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onthejob.data.files import JsonDecoder, binary_lines, json_records, loads, lone_surrogate, require_file
from onthejob.data.messages import (  # noqa: F401 - ALLOWED_MESSAGE_KEYS, chat_message: kept importable here
    ALLOWED_MESSAGE_KEYS,
    Faults,
    canonical_tool_calls,
    chat_message,
    chat_messages,
    json_kind,
    record_tools,
)
from onthejob.data.schema import Example, Problem, ReadResult
from onthejob.errors import DataError

Reader = Callable[[Path, "ReadOptions"], ReadResult]
RecordConverter = Callable[[dict, "Faults", "ReadOptions"], "tuple[list[dict], list[dict] | None] | None"]

FORMATS: dict[str, Reader] = {}
DETECT_KEYS: dict[str, tuple[str, ...]] = {}  # format -> keys the first record must all have
EXTENSIONS: dict[str, str] = {}  # ".csv" -> format

def register_format(name: str, *, keys: tuple[str, ...] = (), extensions: tuple[str, ...] = ()):
    """Register ``fn(path, options) -> ReadResult`` as format ``name``, detected by record keys
    (in registration order) or by file extension."""

    def decorate(fn: Reader) -> Reader:
        FORMATS[name] = fn
        if keys:
            DETECT_KEYS[name] = keys
        for ext in extensions:
            EXTENSIONS[ext] = name
        return fn

    return decorate


def record_format(name: str, *, keys: tuple[str, ...]):
    """Register a JSON/JSONL format from a per-record converter:
    ``convert(record, faults, options) -> (messages, tools) | None``, reporting faults to ``faults``."""

    def decorate(convert_record: RecordConverter) -> RecordConverter:
        register_format(name, keys=keys)(lambda path, opts: _read_records(path, opts, convert_record))
        return convert_record

    return decorate


@dataclass
class ReadOptions:
    source: str  # the path as the user gave it; every Example and Problem names it
    mapping: dict[str, str] | None = None  # CSV column -> role
    system: str | None = None  # fixed system prompt for formats without one


# ------------------------------------------------------------------------------------------------
# Public entry points


def read_examples(
    path: str | Path,
    *,
    format: str | None = None,  # noqa: A002 - matches the --format flag
    mapping: dict[str, str] | None = None,
    system: str | None = None,
) -> ReadResult:
    """Read ``path`` into canonical examples plus the problems met; see the module docstring."""
    source = str(path)
    path = Path(path)
    if require_file(path, source) == 0:
        raise DataError(f"{source}: the file is empty", fix="give a file with at least one example")
    name = format or _detect(path, source)
    if name not in FORMATS:
        raise DataError(
            f"{source}: unknown format {name!r}", fix=f"use --format with one of: {', '.join(FORMATS)}"
        )
    if mapping and name != "csv":
        raise DataError(f"{source}: --map only applies to CSV/TSV files, not format {name!r}")
    if system is not None and lone_surrogate(system):
        raise DataError("--system holds bytes that are not UTF-8", fix="write the system prompt as UTF-8 text")
    result = FORMATS[name](path, ReadOptions(source, mapping, system))
    result.format = name
    return result


def convert(in_path: str | Path, out_path: str | Path, **read_kwargs: Any) -> int:
    """Write ``in_path`` as canonical chat JSONL to ``out_path``; returns the number of examples.

    Refuses when the input has errors, so a converted file never silently drops records, and an
    output that is the input or a directory (``data/outputs.py``)."""
    from onthejob.data.outputs import check_outputs, write_jsonl_files

    check_outputs([in_path], [("--out", out_path)])
    result = read_examples(in_path, **read_kwargs)
    if result.errors:
        first = "\n".join(f"  {p}" for p in result.errors[:5])
        # The fix goes before the list: OjtError would append it after the last listed problem.
        raise DataError(f"{in_path}: {len(result.errors)} error(s), nothing written; fix them and "
                        f"convert again (ojt data check {in_path} lists all). First:\n{first}")
    if not result.examples:
        raise DataError(f"{in_path}: no examples found; nothing written")
    return write_jsonl_files([(out_path, (ex.to_record() for ex in result.examples))])[0]


# ------------------------------------------------------------------------------------------------
# Detection and JSON record iteration


def _detect(path: Path, source: str) -> str:
    if path.suffix.lower() in EXTENSIONS:
        return EXTENSIONS[path.suffix.lower()]
    first = None
    for rec in json_records(path, source, _record_keys()):
        record = rec.value
        if rec.ok and isinstance(record, dict):
            # The first record that fits a format decides, so one faulty record cannot hide it.
            for name, keys in DETECT_KEYS.items():
                if all(k in record for k in keys):
                    return name
            first = first or record
    if first is not None:
        raise DataError(
            f"{source}: cannot tell the format from the records' keys (the first has {sorted(first)})",
            fix=f"pass --format, one of: {', '.join(FORMATS)}",
        )
    return "chat"  # no object record at all: the chat reader reports every malformed line


def _record_keys() -> set[str]:
    """Keys that make a lone JSON object a record rather than a wrapper around the records."""
    return {k for keys in DETECT_KEYS.values() for k in keys}


def jsonl_records(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """``(line, record)`` for each non-blank line of JSONL ``text``; a line that cannot be decoded
    is yielded as its error ``Problem`` naming ``source:line`` (warnings are dropped). Lines split
    on "\n" only, since str.splitlines() would also split on U+2028, legal inside JSON strings."""
    decoder = JsonDecoder(source)
    for i, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            rec = decoder.line(line, i)
            yield i, rec.value if rec.ok else next(p for p in rec.problems if p.severity == "error")


def _read_records(path: Path, opts: ReadOptions, convert_record: RecordConverter) -> ReadResult:
    """Shared loop of the JSON formats: one Example per clean record, every fault reported."""
    result = ReadResult()
    for rec in json_records(path, opts.source, _record_keys()):
        result.problems.extend(rec.problems)
        if not rec.ok:
            continue
        record, line = rec.value, rec.line
        faults = Faults(opts.source, line)
        if not isinstance(record, dict):
            faults.error("data_type", f"record is {json_kind(record)}, not an object",
                         "each record must be a JSON object like {\"messages\": [...]}")
            converted = None
        else:
            converted = convert_record(record, faults, opts)
        result.problems.extend(faults.problems)
        if converted is not None and not faults.problems:
            messages, tools = converted
            result.examples.append(Example(messages, tools, opts.source, line))
    return result


# ------------------------------------------------------------------------------------------------
# Formats


def _with_system(messages: list[dict], system: str | None) -> list[dict]:
    if system and not any(m["role"] == "system" for m in messages):
        return [{"role": "system", "content": system}, *messages]
    return messages


@record_format("chat", keys=("messages",))
def chat_record(record: dict, faults: Faults, opts: ReadOptions):
    """OpenAI chat JSONL: {"messages": [{"role", "content"}...], "tools": [...]?}."""
    messages = chat_messages(record.get("messages"), faults)
    tools = record_tools(record, faults)
    return None if messages is None else (_with_system(messages, opts.system), tools)


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "tool"}


@record_format("sharegpt", keys=("conversations",))
def sharegpt_record(record: dict, faults: Faults, opts: ReadOptions):
    """ShareGPT / LLaMA-Factory: {"conversations": [{"from", "value"}...], "system"?, "tools"?}."""
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        faults.error("missing_messages_list", "'conversations' is missing, empty or not a list",
                     'give the record a non-empty "conversations": [...] list')
        return None
    system = _require_str(record, "system", faults, optional=True) or opts.system
    messages = [{"role": "system", "content": system}] if system else []
    pending: list[str] = []  # ids of tool calls not yet answered by an observation
    n_calls = 0
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            faults.error("message_missing_key", "turn needs 'from' and 'value'",
                         'write each turn as {"from": "human", "value": "..."}', i)
            continue
        if not isinstance(turn["from"], str):
            faults.error("wrong_type", f"'from' is {json_kind(turn['from'])}, not a string",
                         "use one of " + ", ".join(SHAREGPT_ROLES), i)
            continue
        role = SHAREGPT_ROLES.get(turn["from"])
        if role is None:
            faults.error("unrecognized_role", f"'from' is {turn['from']!r}",
                         "use one of " + ", ".join(SHAREGPT_ROLES), i)
            continue
        if not isinstance(turn["value"], str):
            faults.error("wrong_type", "'value' must be a string", "write the value as a string", i)
            continue
        if turn["from"] == "function_call":
            tool_calls = _sharegpt_calls(turn["value"], n_calls, faults, i)
            if tool_calls is None:
                continue
            n_calls += len(tool_calls)
            pending = [c["id"] for c in tool_calls]
            messages.append({"role": "assistant", "content": None, "tool_calls": tool_calls})
        elif role == "tool":
            previous = turns[i - 1] if i else None
            if not (isinstance(previous, dict) and previous.get("from") in ("function_call", "observation")):
                faults.error("tool_without_call", "observation answers no tool call: no function_call "
                             "turn comes right before it", "put the function_call it answers before it, "
                             "or delete it", i)
                continue
            msg = {"role": "tool", "content": turn["value"]}
            if pending:
                msg["tool_call_id"] = pending.pop(0)
            messages.append(msg)
        else:
            messages.append({"role": role, "content": turn["value"]})
    return messages, record_tools(record, faults)


def _sharegpt_calls(value: str, n_calls: int, faults: Faults, index: int) -> list[dict] | None:
    """A function_call turn's value, {"name", "arguments"} or a list of them, as OpenAI tool calls."""
    fix = 'write it as {"name": ..., "arguments": {...}}'
    try:
        calls = loads(value)
    except ValueError as e:
        faults.error("malformed_json", f"function_call value is not JSON: {e}", fix, index)
        return None
    tool_calls = canonical_tool_calls(calls if isinstance(calls, list) else [calls], n_calls)
    if tool_calls is None:
        faults.error("wrong_type", "function_call needs a 'name'", fix, index)
    return tool_calls


def _require_str(record: dict, key: str, faults: Faults, *, optional: bool = False) -> str:
    value = record.get(key)
    if value is None:
        if not optional:
            faults.error("missing_field", f"record has no '{key}'", f'add "{key}": "..."')
        return ""
    if not isinstance(value, str):
        faults.error("wrong_type", f"'{key}' is {json_kind(value)}, not a string",
                     f"write {key} as a string")
        return ""
    return value


@record_format("alpaca", keys=("instruction", "output"))
def alpaca_record(record: dict, faults: Faults, opts: ReadOptions):
    """Alpaca: {"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant]...]}."""
    instruction = _require_str(record, "instruction", faults)
    extra = _require_str(record, "input", faults, optional=True)
    output = _require_str(record, "output", faults)
    system = _require_str(record, "system", faults, optional=True) or opts.system
    history = record.get("history") or []
    ok_history = isinstance(history, list) and all(
        isinstance(h, (list, tuple)) and len(h) == 2 and all(isinstance(s, str) for s in h) for h in history
    )
    if not ok_history:
        faults.error("wrong_type", "'history' must be a list of [user, assistant] string pairs",
                     'write history as [["question", "answer"], ...]')
        return None
    messages = [{"role": "system", "content": system}] if system else []
    for user, assistant in history:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    user = f"{instruction}\n\n{extra}" if instruction and extra else instruction or extra
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return messages, None


@record_format("prompt_completion", keys=("prompt", "completion"))
def prompt_completion_record(record: dict, faults: Faults, opts: ReadOptions):
    """{"prompt": str, "completion": str}, or TRL's conversational form with message lists."""
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, list) and isinstance(completion, list):
        messages = chat_messages(prompt + completion, faults, key="prompt + completion")
    else:
        messages = [{"role": "user", "content": _require_str(record, "prompt", faults)},
                    {"role": "assistant", "content": _require_str(record, "completion", faults)}]
    return None if messages is None else (_with_system(messages, opts.system), None)


@record_format("preference", keys=("input", "preferred_output"))
def preference_record(record: dict, faults: Faults, opts: ReadOptions):
    """OpenAI preference (DPO) JSONL: {"input": {"messages", "tools"?}, "preferred_output":
    [assistant message], "non_preferred_output": [...]}, what ``ojt data from-feedback --pairs-out``
    writes. There is no DPO trainer yet: a record reads as supervised fine-tuning on its preferred
    answer, input.messages followed by preferred_output. The input's own assistant turns are
    context (weight 0 unless they give one) and non_preferred_output is not read. Message indices
    count through input.messages, then preferred_output."""
    given, preferred = record.get("input"), record.get("preferred_output")
    if not isinstance(given, dict):
        faults.error("wrong_type", f"'input' is {json_kind(given)}, not an object",
                     'write "input": {"messages": [...], "tools": [...]?}')
        return None
    context = given.get("messages")
    if not isinstance(context, list) or not context or not isinstance(preferred, list) or not preferred:
        faults.error("missing_messages_list", "'input.messages' or 'preferred_output' is missing, empty or not a list",
                     'give "input": {"messages": [...]} and "preferred_output": [{"role": "assistant", ...}]')
        return None
    messages = chat_messages(context + preferred, faults, key="input.messages + preferred_output")
    for i, msg in enumerate(preferred, start=len(context)):
        if isinstance(msg, dict) and msg.get("role") in ("system", "user", "tool"):
            faults.error("wrong_type", f"preferred_output holds a {msg['role']} message",
                         "preferred_output holds the assistant's answer only", i)
    tools = record_tools(given, faults)
    if messages is None:
        return None
    for msg in messages[: len(context)]:
        if msg["role"] == "assistant":
            msg.setdefault("weight", 0)
    return _with_system(messages, opts.system), tools


@register_format("csv", extensions=(".csv", ".tsv"))
def read_csv(path: Path, opts: ReadOptions) -> ReadResult:
    """CSV/TSV with a header row; ``opts.mapping`` says which column holds which role."""
    lines = _csv_lines(path, opts.source)
    first = next(lines, "")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else max(",;\t|", key=first.count)
    reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
    try:
        return _csv_rows(reader, opts)
    except csv.Error as e:
        raise DataError(f"{opts.source}:{reader.line_num}: cannot parse as CSV: {e}",
                        fix="check the quoting of this row") from e


def _csv_lines(path: Path, source: str) -> Iterator[str]:
    """The file's lines as text, newlines kept (csv's own quoting handles them). A faulty line
    is a DataError: a row cut short inside a quoted field would shift every row after it."""
    for number, raw in binary_lines(path, source):
        if isinstance(raw, Problem):
            raise DataError(f"{source}:{number}: {raw.message}", fix=raw.fix)
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{source}:{number}: not UTF-8 text ({e.reason} at byte column {e.start + 1})",
                            fix="re-save the file as UTF-8") from e


def _csv_rows(reader: Any, opts: ReadOptions) -> ReadResult:
    header = next(reader, None)
    if not header:
        raise DataError(f"{opts.source}: the file has no header row", fix="put column names on line 1")
    columns = [(header.index(col), role) for col, role in _check_mapping(opts, header).items()]
    result, start = ReadResult(), reader.line_num + 1
    for row in reader:
        # A row starts on the line after the previous one ended (quoted fields span lines).
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            result.problems.append(Problem(
                "error", "wrong_type", f"row has {len(row)} fields, the header has {len(header)}",
                "check the quoting and delimiters of this row", opts.source, line))
            continue
        messages = [{"role": role, "content": row[i]} for i, role in columns]
        result.examples.append(Example(_with_system(messages, opts.system), None, opts.source, line))
    return result


def _check_mapping(opts: ReadOptions, header: list[str]) -> dict[str, str]:
    cols = ", ".join(header)
    if not opts.mapping:
        raise DataError(
            f"{opts.source}: say which columns hold the conversation (columns: {cols})",
            fix="pass --map COLUMN=user --map COLUMN=assistant",
        )
    for col, role in opts.mapping.items():
        if col not in header:
            raise DataError(f"{opts.source}: no column {col!r} (columns: {cols})",
                            fix="fix the --map COLUMN=ROLE option")
        if role not in ("system", "user", "assistant"):
            raise DataError(f"{opts.source}: --map {col}={role}: role must be system, user or assistant")
    if "assistant" not in opts.mapping.values():
        raise DataError(f"{opts.source}: no column is mapped to assistant (columns: {cols})",
                        fix="add --map COLUMN=assistant")
    return opts.mapping
