"""Open data files and decode their JSON, with bounded memory and no surprises.

Every way a file as a whole cannot be read ends in one ``DataError`` naming it: a path that is a
directory, a symlink loop or a broken link, a file that cannot be opened, a file read as one JSON
document (a JSON array or object) that is over its size limit, bytes that are not UTF-8 in such a
document. Every way one record cannot be read is a ``Problem`` on its line, and reading goes on:
a line over the line limit, bytes that are not UTF-8 (with the byte column), invalid JSON, JSON
nested deeper than ``MAX_DEPTH``, a number with more digits than Python converts, a lone UTF-16
surrogate (``"\\ud83d"``: valid JSON, but no text, so it cannot be written or tokenized). A key
given twice in one object is a warning: the last value wins, as in ``json.loads``.

Limits, raised with an environment variable (in MiB) when a file really needs more:

    ONTHEJOB_MAX_LINE_MB=8     one JSONL line, one record of a JSON array, one CSV line
    ONTHEJOB_MAX_FILE_MB=256   a file read whole as one JSON document
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import json
import math
import os
import re
import stat
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from onthejob.data.schema import Problem
from onthejob.errors import DataError

MIB = 1 << 20
# A record is tokenized and templated in memory several times over, so one 50 MB line took
# 4.4 GB for statistics. Real chat records are kilobytes; 8 MiB is ~2M tokens, far past any
# context window.
MAX_LINE_MB = 8
# A JSON array or object is decoded whole: Python objects take several times the file's bytes.
MAX_FILE_MB = 256
MAX_DEPTH = 100  # JSON nesting; chat records need ~6, tool arguments a few more
LINE_LIMIT_VAR, FILE_LIMIT_VAR = "ONTHEJOB_MAX_LINE_MB", "ONTHEJOB_MAX_FILE_MB"

_SPACE = b" \t\r\n"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how a lone surrogate gets into JSON text
_SURROGATE = re.compile("[\ud800-\udfff]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_BRACKET_OR_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


def limit_bytes(var: str, default_mb: int) -> int:
    """The limit in bytes: ``$var`` MiB when set, else ``default_mb``."""
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default_mb * MIB
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise DataError(f"{var}={raw!r} is not a size in MiB", fix=f"set it to a number, e.g. {var}={4 * default_mb}")
    return int(value * MIB)


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


# ------------------------------------------------------------------------------------------------
# The file as a whole


def require_file(path: Path, source: str) -> int:
    """The size of the regular file ``path``; else a DataError saying what the path is."""
    try:
        info = path.stat()
    except OSError as e:
        if e.errno == errno.ENOENT and path.is_symlink():
            raise DataError(f"{source}: a broken symlink (to {os.readlink(path)})", fix="point it at a data file") from e
        if e.errno == errno.ELOOP:
            raise DataError(f"{source}: a symlink loop (the link points back at itself)",
                            fix="point the link at a data file") from e
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DataError(f"{source}: no such file", fix="check the path") from e
        raise DataError(f"{source}: cannot read the file: {_reason(e)}") from e
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{source}: is a directory, not a data file", fix="give a file inside it")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{source}: not a regular file", fix="save the data to a file and give its path")
    return info.st_size


def _reason(e: OSError) -> str:
    text = e.strerror or str(e)
    return text[:1].lower() + text[1:]


@contextlib.contextmanager
def open_binary(path: Path, source: str) -> Iterator[BinaryIO]:
    """``open(path, "rb")``; an OSError while opening or reading is a DataError naming the file."""
    try:
        with open(path, "rb") as f:
            yield f
    except OSError as e:
        raise DataError(f"{source}: cannot read the file: {_reason(e)}") from e


def decode_utf8(data: bytes, source: str) -> str:
    """``data`` as text; bytes that are not UTF-8 are a DataError naming file:line and byte column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = 1 + data.count(b"\n", 0, e.start)
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{source}:{line}: not UTF-8 text ({e.reason} at byte column {column})",
                        fix="re-save the file as UTF-8") from e


def read_document(path: Path, source: str) -> str:
    """The whole file as text, for formats decoded whole; bounded by ONTHEJOB_MAX_FILE_MB."""
    limit = limit_bytes(FILE_LIMIT_VAR, MAX_FILE_MB)
    size = require_file(path, source)
    if size > limit:
        raise DataError(
            f"{source}: {_mib(size)}, over the {_mib(limit)} limit for a file read whole as one JSON document",
            fix=f"write it as JSONL (one record per line, read line by line), or raise the limit: "
                f"{FILE_LIMIT_VAR}={math.ceil(size / MIB)}",
        )
    with open_binary(path, source) as f:
        data = f.read()
    return decode_utf8(data.removeprefix(codecs.BOM_UTF8), source)


def first_byte(path: Path, source: str) -> bytes:
    """The first byte that is not a BOM or whitespace (b"" when there is none)."""
    with open_binary(path, source) as f:
        head = f.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise DataError(f"{source}: UTF-16 text", fix="re-save the file as UTF-8")
        f.seek(3 if head.startswith(codecs.BOM_UTF8) else 0)
        while block := f.read(1 << 16):
            if stripped := block.lstrip(_SPACE):
                return stripped[:1]
    return b""


# ------------------------------------------------------------------------------------------------
# Line by line


def binary_lines(path: Path, source: str) -> Iterator[tuple[int, bytes | Problem]]:
    """``(line, bytes)`` of each line (newline kept, BOM dropped), or a Problem for a line over
    ONTHEJOB_MAX_LINE_MB; a long line is skipped in blocks, so memory stays within the limit."""
    limit = limit_bytes(LINE_LIMIT_VAR, MAX_LINE_MB)
    with open_binary(path, source) as f:
        number = 0
        while raw := f.readline(limit + 1):
            number += 1
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if len(raw) <= limit or raw.endswith(b"\n"):
                yield number, raw
                continue
            size = len(raw)
            while not raw.endswith(b"\n") and (raw := f.readline(MIB)):
                size += len(raw)
            yield number, Problem(
                "error", "record_too_large", f"line is {_mib(size)}, over the {_mib(limit)} limit for one record",
                f"split it into smaller examples, or raise the limit: {LINE_LIMIT_VAR}={math.ceil(size / MIB)}",
                source, number)


def text_lines(path: Path, source: str) -> Iterator[tuple[int, str | Problem]]:
    """``(line, text)`` of each line, without its newline; a Problem for a line over the limit
    or not UTF-8."""
    for number, raw in binary_lines(path, source):
        if isinstance(raw, Problem):
            yield number, raw
            continue
        try:
            yield number, raw.removesuffix(b"\n").decode("utf-8")
        except UnicodeDecodeError as e:
            yield number, Problem("error", "invalid_utf8",
                                  f"not UTF-8 text ({e.reason} at byte column {e.start + 1})",
                                  "re-save the file as UTF-8, or fix the bytes of this line", source, number)


# ------------------------------------------------------------------------------------------------
# JSON


@dataclass
class Record:
    """One JSON record and the problems met decoding it; ``value`` is unusable when not ``ok``."""

    line: int
    value: Any = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(p.severity != "error" for p in self.problems)


class _Unreadable(Exception):
    def __init__(self, code: str, message: str, fix: str):
        super().__init__(message)
        self.code, self.message, self.fix = code, message, fix


class JsonDecoder:
    """Decodes the records of one file; never raises on a record, reports it instead."""

    def __init__(self, source: str):
        self.source = source
        self._duplicates: list[str] = []
        self._json = json.JSONDecoder(object_pairs_hook=self._object, parse_int=self._int)

    def _object(self, pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            seen: set[str] = set()
            for key, _value in pairs:
                if key in seen:
                    self._duplicates.append(key)
                seen.add(key)
        return obj

    @staticmethod
    def _int(text: str) -> int:
        try:
            return int(text)
        except ValueError:  # more digits than sys.get_int_max_str_digits()
            digits = len(text.lstrip("-"))
            raise _Unreadable("number_too_long",
                              f"a number has {digits} digits, more than the {sys.get_int_max_str_digits()} "
                              "Python converts", "write the number with fewer digits, or as a string") from None

    def line(self, text: str, line: int) -> Record:
        """The record on one JSONL line (the whole ``text`` must be one JSON value)."""
        record, end = self.at(text, 0, line)
        if record.ok and (extra := _skip_space(text, end)) < len(text):
            return self._malformed(line, "Extra data", extra + 1)
        return record

    def at(self, text: str, pos: int, line: int) -> tuple[Record, int]:
        """The record starting at ``text[pos]`` (on ``line``; spaces but no newline before it),
        and where it ends (-1: it cannot be told)."""
        self._duplicates = []
        start = _skip_space(text, pos)
        try:
            value, end = self._json.raw_decode(text, start)
        except json.JSONDecodeError as e:
            return self._malformed(line + text.count("\n", start, e.pos), e.msg, e.colno), -1
        except RecursionError:
            fault = _too_deep()
        except _Unreadable as e:
            fault = e
        else:
            return self._checked(value, line, text, start, end), end
        return self.error(line, fault), skip_value(text, start)

    def _checked(self, value: Any, line: int, text: str, start: int, end: int) -> Record:
        """A Record of the value decoded from ``text[start:end]``: too deep or holding a lone
        surrogate is an error, a duplicate key a warning. The text tells which walks are needed."""
        record = Record(line, value)
        for key in dict.fromkeys(self._duplicates):
            record.problems.append(Problem(
                "warning", "duplicate_key", f"key {key!r} appears twice in one object; the last value is used",
                "delete the copy you did not mean", self.source, line))
        self._duplicates = []
        deep = text.count("[", start, end) + text.count("{", start, end) > MAX_DEPTH
        odd = _SURROGATE_ESCAPE.search(text, start, end) is not None
        fault = _walk(value, deep, odd) if deep or odd else None
        if fault:
            record.problems.append(Problem("error", fault.code, fault.message, fault.fix, self.source, line))
        return record

    def error(self, line: int, fault: _Unreadable) -> Record:
        return Record(line, None, [Problem("error", fault.code, fault.message, fault.fix, self.source, line)])

    def _malformed(self, line: int, msg: str, column: int) -> Record:
        return self.error(line, _Unreadable("malformed_json", f"invalid JSON: {msg} (column {column})",
                                             "fix the JSON syntax on this line"))


def loads(text: str) -> Any:
    """``json.loads`` for JSON held in a string of a record (a tools list, tool call arguments),
    with a record's checks; ValueError says what is wrong."""
    record = JsonDecoder("<string>").line(text, 1)
    for p in record.problems:
        if p.severity == "error":
            raise ValueError(p.message.removeprefix("invalid JSON: "))
    return record.value


def lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (how Python keeps undecodable bytes of argv)."""
    return _SURROGATE.search(text) is not None


def _too_deep() -> _Unreadable:
    return _Unreadable("too_deep", f"JSON nested more than {MAX_DEPTH} levels deep",
                       "flatten the record: no chat record needs that many levels")


def _walk(value: Any, deep: bool, odd: bool) -> _Unreadable | None:
    """The first fault of a decoded value: nesting past MAX_DEPTH, or a lone surrogate."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if odd and (m := _SURROGATE.search(item)):
                return _Unreadable(
                    "lone_surrogate", f"a string holds the lone UTF-16 surrogate \\u{ord(m.group()):04x}, "
                    "which is not a character", "write the character itself, or escape it as a full "
                    "surrogate pair such as \\ud83d\\ude00")
            continue
        if isinstance(item, (dict, list)):
            if deep and depth > MAX_DEPTH:
                return _too_deep()
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def skip_value(text: str, pos: int) -> int:
    """The end of the JSON value at ``text[pos]``, found without decoding it; -1 when unclear."""
    if pos >= len(text) or text[pos] not in "[{":
        m = _NUMBER.match(text, pos)
        return m.end() if m else -1
    depth = 0
    for m in _BRACKET_OR_STRING.finditer(text, pos):
        token = m.group()
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
            if depth == 0:
                return m.end()
    return -1


def json_records(path: Path, source: str, record_keys: Collection[str] = ()) -> Iterator[Record]:
    """Every record of a JSON file, whatever its layout and extension: a JSON array, an object
    holding the records in a list under some key, a single JSON object (a record when it has any
    of ``record_keys``), or JSONL."""
    head = first_byte(path, source)
    if not head:
        raise DataError(f"{source}: the file is empty", fix="give a file with at least one example")
    decoder = JsonDecoder(source)
    if head == b"[":
        yield from _array_records(read_document(path, source), decoder)
    elif head == b"{" and _one_document(path, source, decoder):
        yield from _document_records(path, source, decoder, record_keys)
    else:
        yield from _line_records(path, source, decoder)


def _line_records(path: Path, source: str, decoder: JsonDecoder) -> Iterator[Record]:
    for number, text in text_lines(path, source):
        if isinstance(text, Problem):
            yield Record(number, None, [text])
        elif text.strip():
            yield decoder.line(text, number)


def _one_document(path: Path, source: str, decoder: JsonDecoder) -> bool:
    """Whether a file starting with "{" is one JSON document rather than JSONL: its first record
    is not one whole line, or it has no other line. A document over the file limit is read as
    JSONL only if its first line is a record."""
    lines = ((n, t) for n, t in text_lines(path, source) if not isinstance(t, str) or t.strip())
    number, first = next(lines, (0, None))
    if not isinstance(first, str):
        return False
    if not _malformed(decoder.line(first, number)):
        return next(lines, None) is None
    return True


def _malformed(record: Record) -> bool:
    return any(p.code == "malformed_json" for p in record.problems)


def _document_records(path: Path, source: str, decoder: JsonDecoder, record_keys: Collection[str]) -> Iterator[Record]:
    text = read_document(path, source)
    whole, _end = decoder.at(text, 0, 1)
    if _malformed(whole):
        yield from _line_records(path, source, decoder)  # several objects: JSONL after all
        return
    value = whole.value
    wrapper = isinstance(value, dict) and not any(k in value for k in record_keys)
    lists = [v for v in value.values() if isinstance(v, list)] if wrapper else []
    if not lists:
        yield whole
        return
    # Records nested in an object: no cheap way to their lines, so number them 1, 2, ... and
    # check each on its own, so one bad record does not hide the others.
    warnings = [Problem(p.severity, p.code, p.message, p.fix, source, 0) for p in whole.problems
                if p.severity == "warning"]
    for i, item in enumerate(lists[0], start=1):
        fault = _walk(item, deep=True, odd=True)
        record = decoder.error(i, fault) if fault else Record(i, item)
        record.problems[:0] = warnings if i == 1 else []
        yield record


def _array_records(text: str, decoder: JsonDecoder) -> Iterator[Record]:
    """Decode array items one by one so each record knows the line it starts on."""
    limit = limit_bytes(LINE_LIMIT_VAR, MAX_LINE_MB)
    pos, line, counted = text.index("[") + 1, 1, 0
    while True:
        pos = _skip_space(text, pos)
        if pos >= len(text) or text[pos] == "]":
            return
        line += text.count("\n", counted, pos)
        counted = pos
        record, end = decoder.at(text, pos, line)
        if end < 0:  # a broken array cannot be resynchronised reliably: report it and stop
            yield record
            return
        if (end - pos) * 4 > limit and (size := len(text[pos:end].encode("utf-8", "surrogatepass"))) > limit:
            record = decoder.error(line, _Unreadable(
                "record_too_large", f"record is {_mib(size)}, over the {_mib(limit)} limit for one record",
                f"split it into smaller examples, or raise the limit: {LINE_LIMIT_VAR}={math.ceil(size / MIB)}"))
        yield record
        pos = _skip_space(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] != "]":
            at = line + text.count("\n", counted, pos)
            yield decoder.error(at, _Unreadable("malformed_json", "expected ',' or ']' after this record",
                                                "separate the records of the array with commas"))
            return
