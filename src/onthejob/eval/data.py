"""Eval sets: chat JSONL whose last message is the reference answer, with optional checks.

    from onthejob.eval.data import read_eval
    items = read_eval("examples/hr/eval.jsonl")

One record per line::

    {"messages": [{"role": "user", "content": "How long is probation?"},
                  {"role": "assistant", "content": "Three months."}],
     "facts": ["three months",             # optional: each must be found in the answer;
               ["ten days", "10 days"]],   #   a list is alternatives, any one will do
     "regex": "^[A-Z].*\\.$",              # optional: the answer must match (re.search)
     "json_schema": {"type": "object"},    # optional: the answer must be JSON valid against it
     "covered": false,                     # optional: the documents do not cover it (RAG should decline)
     "refuse": true}                       # optional: a correct answer declines (a harmful request)

Facts are found as a reader would find them (``onthejob.eval.facts``): case, punctuation, dashes,
articles and the way a number is written do not matter ("ten days" = "10 days", "$2 million" =
"2,000,000", "full-time" = "full time"), and a fact of four or more content words also counts when
75% of those words stand together in the answer with the same negation. At most 100 facts per
record, 20 alternatives per fact and 2,000 characters per string. ``from_token_presence`` turns the
HR question data's ``token_presence`` CSV into such records.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onthejob.errors import DataError


@dataclass
class EvalItem:
    """One eval question: the conversation to answer, the reference answer and its checks."""

    line: int  # 1-based line in the JSONL file
    messages: list[dict[str, Any]]  # the conversation without the reference answer
    reference: str  # the reference assistant answer
    facts: list[str | list[str]] = field(default_factory=list)  # what a correct answer states; a list: alternatives
    regex: str | None = None  # a pattern the answer must match (re.search)
    json_schema: dict | None = None  # the answer must be JSON valid against this schema
    raw: dict = field(default_factory=dict)  # the record as read, extra keys included
    covered: bool = True  # False: the documents do not cover it; a grounded answer declines
    refuse: bool = False  # True: a correct answer declines (a harmful request in the general probe)

    @property
    def question(self) -> str:
        """The last user message (what tables show)."""
        users = [m for m in self.messages if m.get("role") == "user"]
        return str(users[-1].get("content") or "") if users else ""


def read_eval(path: str | Path) -> list[EvalItem]:
    """Read an eval JSONL file; any bad line raises DataError naming ``path:line``. Lines are read
    as training data is (``onthejob.data.files``): bounded in length and nesting, and bytes that are
    not UTF-8 are a problem of their line, not a crash."""
    from onthejob.data.files import JsonDecoder, require_file, text_lines
    from onthejob.data.schema import Problem

    source = str(path)
    require_file(Path(path), source)
    decoder = JsonDecoder(source)
    items = []
    for n, text in text_lines(Path(path), source):
        if isinstance(text, Problem):
            raise DataError(f"{source}:{n}: {text.message}", fix=text.fix)
        if text.strip():
            items.append(_item(_parse(decoder.line(text, n), source, n), f"{source}:{n}", n))
    if not items:
        raise DataError(f"{source}: no eval examples", fix="write one chat record per line")
    return items


def _parse(decoded, source: str, n: int) -> dict:
    """The record of one decoded line (``files.Record``), or the first error on it."""
    error = next((p for p in decoded.problems if p.severity == "error"), None)
    if error is not None and error.code == "malformed_json":
        raise DataError(f"{source}:{n}: not valid JSON ({error.message.removeprefix('invalid JSON: ')})",
                        fix="write one JSON object per line")
    if error is not None:
        raise DataError(f"{source}:{n}: {error.message}", fix=error.fix)
    record = decoded.value
    if not isinstance(record, dict):
        raise DataError(f"{source}:{n}: a record must be a JSON object, not {type(record).__name__}")
    return record


def _item(record: dict, where: str, n: int) -> EvalItem:
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise DataError(f"{where}: 'messages' must be a non-empty list of messages")
    last = messages[-1]
    if last.get("role") != "assistant" or not isinstance(last.get("content"), str):
        raise DataError(f"{where}: the last message must be the reference answer",
                        fix='end "messages" with {"role": "assistant", "content": "..."}')
    if not any(m.get("role") == "user" for m in messages[:-1]):
        raise DataError(f"{where}: no user message before the reference answer")
    facts = record.get("facts") or []
    _check_facts(facts, where)
    regex = record.get("regex")
    if regex is not None:
        if not isinstance(regex, str):
            raise DataError(f"{where}: 'regex' must be a string")
        try:
            re.compile(regex)
        except re.error as e:
            raise DataError(f"{where}: 'regex' is not a valid regular expression ({e})") from None
    schema = record.get("json_schema")
    if schema is not None:
        _check_schema(schema, where)
    flags = {}
    for key in ("covered", "refuse"):
        if key in record and not isinstance(record[key], bool):
            raise DataError(f"{where}: {key!r} must be true or false, not {record[key]!r}")
        flags[key] = record.get(key, key == "covered")
    return EvalItem(n, messages[:-1], last["content"], facts, regex, schema, record, **flags)


MAX_FACTS, MAX_ALTERNATIVES, MAX_FACT_CHARS = 100, 20, 2000  # matching cost grows with each


def _check_facts(facts: Any, where: str) -> None:
    shape = 'a list whose entries are non-empty strings or non-empty lists of them (alternatives)'
    example = '"facts": ["three months", ["ten days", "10 days"]]'
    if not isinstance(facts, list):
        raise DataError(f"{where}: 'facts' must be {shape}", fix=f"write e.g. {example}")
    if len(facts) > MAX_FACTS:
        raise DataError(f"{where}: 'facts' has {len(facts)} entries, at most {MAX_FACTS} allowed",
                        fix="split the question or keep the facts that decide it")
    for i, fact in enumerate(facts):
        alternatives = fact if isinstance(fact, list) else [fact]
        if not alternatives or not all(isinstance(x, str) and x.strip() for x in alternatives):
            raise DataError(f"{where}: 'facts'[{i}] is {json.dumps(fact)[:80]}; 'facts' must be {shape}",
                            fix=f"write e.g. {example}")
        if len(alternatives) > MAX_ALTERNATIVES:
            raise DataError(f"{where}: 'facts'[{i}] has {len(alternatives)} alternatives, at most {MAX_ALTERNATIVES}")
        if any(len(x) > MAX_FACT_CHARS for x in alternatives):
            raise DataError(f"{where}: 'facts'[{i}] is longer than {MAX_FACT_CHARS:,} characters",
                            fix="state the fact in a phrase or sentence")


def _check_schema(schema: Any, where: str) -> None:
    import jsonschema

    if not isinstance(schema, dict):
        raise DataError(f"{where}: 'json_schema' must be a JSON object (a JSON Schema)")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise DataError(f"{where}: 'json_schema' is not a valid JSON Schema ({e.message})") from None


def from_token_presence(csv_path: str | Path) -> list[dict]:
    """Records from the HR data's token_presence CSV (question, answer, tokens_present, document).

    ``tokens_present`` is a Python list literal (``"['3 months']"``); it becomes ``facts``."""
    source = str(csv_path)
    try:
        with open(csv_path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("question", "answer", "tokens_present") if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{source}:1: missing column(s) {', '.join(missing)}",
                                fix="use the token_presence CSV: question,answer,tokens_present[,document]")
            # The header is line 1; a quoted answer may span lines, so the reader counts them.
            return [_token_record(row, f"{source}:{reader.line_num}") for row in reader]
    except OSError as e:
        raise DataError(f"{source}: cannot read ({e.strerror})", fix="check the path") from None


def _token_record(row: dict, where: str) -> dict:
    try:
        facts = ast.literal_eval(row["tokens_present"] or "[]")
    except (ValueError, SyntaxError):
        raise DataError(f"{where}: tokens_present is not a list literal: {row['tokens_present']!r}") from None
    if not isinstance(facts, list | tuple) or not all(isinstance(x, str) for x in facts):
        raise DataError(f"{where}: tokens_present must be a list of strings")
    if not (row["question"] or "").strip() or not (row["answer"] or "").strip():
        raise DataError(f"{where}: empty question or answer")
    record: dict[str, Any] = {
        "messages": [{"role": "user", "content": row["question"].strip()},
                     {"role": "assistant", "content": row["answer"].strip()}],
        "facts": [x for x in facts if x.strip()],
    }
    if row.get("document"):
        record["document"] = row["document"]
    return record
