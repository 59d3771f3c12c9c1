"""Property: whatever bytes a data file holds, reading, checking and converting it ends in a report
or an onthejob error (an ``OjtError``), never in any other exception (issue #13).

Files start from small hand-written samples of every format and, when ``../shared`` is present,
from the first records of the real sample files; then JSON values are replaced (lists, objects,
huge numbers, lone surrogates, null, deep nesting), keys deleted, and bytes flipped, cut or
inserted. Fixed by ``derandomize=True``, so CI runs the same few thousand cases every time.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onthejob.data.check import check_file
from onthejob.data.readers import FORMATS, convert
from onthejob.errors import OjtError

from tests.conftest import SHARED_DATA

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
HAND_WRITTEN: dict[str, list] = {
    "chat": [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello", "weight": 1}]},
        {"tools": [TOOL], "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny.", "loss_weight": 1.0}]},
    ],
    "sharegpt": [
        {"system": "s", "tools": json.dumps([TOOL["function"]]), "conversations": [
            {"from": "human", "value": "Weather?"},
            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
            {"from": "observation", "value": "sunny"}, {"from": "gpt", "value": "Sunny."}]},
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
    ],
    "alpaca": [
        {"instruction": "Sum", "input": "1 2", "output": "3", "system": "Be terse."},
        {"instruction": "Hi", "output": "Hello", "history": [["q", "a"]]},
    ],
    "prompt_completion": [
        {"prompt": "p", "completion": "c"},
        {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]},
    ],
}
CSV_SAMPLE = 'question,answer\nhello,"hi, there"\n"multi\nline",yes\n'
CSV_MAP = {"question": "user", "answer": "assistant"}


def _shared_samples() -> list[tuple[str, list]]:
    """The first few records of each real sample file (a few, so each case stays fast)."""
    folder = SHARED_DATA / "formats"
    if not folder.is_dir():
        return []
    samples = []
    for path in sorted(folder.iterdir()):
        text = path.read_text(encoding="utf-8")
        records = json.loads(text) if path.suffix == ".json" else [json.loads(x) for x in text.splitlines()[:3]]
        samples.append((path.name, records[:3]))
    return samples


SAMPLES = [(name, records) for name, records in HAND_WRITTEN.items()] + _shared_samples()
# One record each, so that mutations land in the tool specs and calls templates render.
TOOL_SAMPLES = [(f"{name}_tools", [r]) for name, records in SAMPLES for r in records[:3]
                if any(k in json.dumps(r) for k in ('"tools"', '"tool_calls"', '"function_call"'))]
RAW = "\x00raw{}\x00"  # a placeholder json.dumps cannot write: replaced by raw text afterwards
RAW_TEXTS = ["9" * 5000, "-" + "1" * 4400, "[" * 3000 + "]" * 3000, '{"a":' * 1500 + "1" + "}" * 1500,
             "1e999", "NaN", "-Infinity", '"\\udc00"', '"\\ud83d\\ude00"']
NASTY = st.one_of(
    st.sampled_from([None, True, 0, 1, -1, 0.5, "", " ", "\x00", "\ud83d", "\udfff", "x\u2028y", "<|im_end|>",
                     "{{ raise }}", "{%", [], {}, [None], [[]], {"": None}, {"role": "user"},
                     {"type": "text"}, [{"type": "text", "text": 1}], {"name": ["x"]}, {"name": 1},
                     {"function": []}, {"function": {"name": None}}, [{"function": {"name": 2}}],
                     {"role": "tool", "content": "r"}, [{"id": 1, "function": {"name": "f"}}]]),
    st.sampled_from([RAW.format(i) for i in range(len(RAW_TEXTS))]),
    st.integers(-(2**70), 2**70),
    st.text(max_size=8),
    st.lists(st.sampled_from([None, 1, "a", {}, []]), max_size=3),
    st.dictionaries(st.sampled_from(["role", "content", "from", "value", "function", "name", "id",
                                     "arguments", "tool_calls", "type", "text"]),
                    st.sampled_from([None, 1, "a", "user", "assistant", "tool", {}, [], [{}]]), max_size=3),
)
ROLE_WORDS = st.sampled_from(["system", "user", "assistant", "tool", "function", "human", "gpt",
                              "function_call", "observation", "robot"])
# Inserted into a string, so the record around it stays valid and the value reaches later stages.
IN_STRING = st.sampled_from(["\ud83d", "\udc00", "\x00", "\u2028", "\r\n", "<|im_end|>", "<|eot_id|>",
                             "{{ x }}", "{% if %}", '"', "\\", "\ufeff", "\U0001f600", "x" * 3000])


@st.composite
def mutated_leaf(draw, value):
    if isinstance(value, str) and draw(st.booleans()):
        at = draw(st.integers(0, len(value)))
        return value[:at] + draw(IN_STRING) + value[at:]
    return draw(st.one_of(NASTY, ROLE_WORDS))


def _spots(value, path=()):
    """The path of every value inside ``value``, itself last (Hypothesis draws low indices most)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _spots(child, (*path, key))
    yield path


def _edit(value, path, edit):
    """A copy of ``value`` with ``edit(parent, key)`` applied at ``path`` (copied along the way)."""
    copy = dict(value) if isinstance(value, dict) else list(value)
    if len(path) == 1:
        edit(copy, path[0])
    else:
        copy[path[0]] = _edit(value[path[0]], path[1:], edit)
    return copy


@st.composite
def mutated_value(draw, value):
    """``value`` with one spot, chosen among all its values alike, replaced, deleted or renamed
    (or a value inserted before it)."""
    spots = list(_spots(value))
    path = spots[draw(st.integers(0, len(spots) - 1))]
    if not path:
        return draw(mutated_leaf(value))
    op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "rename"]))

    def edit(parent, key):
        if op == "replace":
            parent[key] = draw(mutated_leaf(parent[key]))
        elif op == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["role", "content", "messages", "from", "value", "x"]))] = parent.pop(key)
        else:
            parent.insert(key, draw(NASTY))

    return _edit(value, path, edit)


def _dump(records: list, layout: str) -> str:
    if layout == "jsonl":
        text = "".join(json.dumps(r) + "\n" for r in records)
    elif layout == "array":
        text = json.dumps(records, indent=2)
    elif layout == "array_compact":
        text = json.dumps(records)
    else:  # records wrapped in an object, as some datasets ship
        text = json.dumps({"version": 1, "data": records}, indent=1)
    for i, raw in enumerate(RAW_TEXTS):
        text = text.replace(json.dumps(RAW.format(i)), raw)
    return text


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """``data`` with a few bytes cut, flipped or inserted (invalid UTF-8, a BOM, newlines, brackets)."""
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["cut", "truncate", "insert", "flip"]))
        if op == "truncate":
            data = data[:at]
        elif op == "cut":
            data = data[:at] + data[at + draw(st.integers(1, 40)):]
        elif op == "insert":
            chunk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\n", b"\r\n",
                                          b"[", b"{", b"]", b"}", b",", b'"', b"\\", b"\x00", b"\\ud800"]))
            data = data[:at] + chunk + data[at:]
        elif data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    return data


@st.composite
def data_files(draw, samples=SAMPLES, *, byte_noise: bool = False):
    """(file name, bytes, --format or None, --map or None)."""
    if samples is SAMPLES and draw(st.integers(0, 9)) == 0:
        data = CSV_SAMPLE.encode()
        return "d.csv", draw(mutated_bytes(data)), None, dict(CSV_MAP)
    name, records = samples[draw(st.integers(0, len(samples) - 1))]
    for _ in range(draw(st.integers(1, 3))):
        records = draw(mutated_value(records))
    if not isinstance(records, list):
        records = [records]
    layout = draw(st.sampled_from(["jsonl", "array", "array_compact", "wrapped"]))
    data = _dump(records, layout).encode("utf-8", "surrogatepass")
    if byte_noise:
        data = draw(mutated_bytes(data))
    suffix = draw(st.sampled_from([".jsonl", ".json", ".txt"]))
    fmt = draw(st.sampled_from([None] * 8 + sorted(f for f in FORMATS if f != "csv")))
    return Path(name).stem + suffix, data, fmt, None


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr("os.fsync", lambda fd: None)  # convert's atomic write: durability is not tested here
        yield Path(tmp)


def _read_check_convert(folder: Path, case, tokenizer=None) -> None:
    name, data, fmt, mapping = case
    path = folder / name
    path.write_bytes(data)
    try:
        report = check_file(path, format=fmt, mapping=mapping, tokenizer=tokenizer, max_seq_len=64)
        assert all(p.fix for p in report.problems)
        "\n".join(map(str, report.problems)).encode("utf-8")  # the report can be printed
        if report.ok:  # convert refuses files with errors, after the same read check_file did
            convert(path, folder / "out.jsonl", format=fmt, mapping=mapping)
    except OjtError:
        pass  # the one kind of failure a user may see


FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(FUZZ, max_examples=1000)
@given(case=data_files(byte_noise=False))
def test_mutated_json_values_never_crash_read_check_or_convert(folder, case):
    _read_check_convert(folder, case)


@settings(FUZZ, max_examples=800)
@given(case=data_files(byte_noise=True))
def test_mutated_bytes_never_crash_read_check_or_convert(folder, case):
    _read_check_convert(folder, case)


@settings(FUZZ, max_examples=250)
@given(case=data_files(TOOL_SAMPLES), template=st.sampled_from(["llama3", "chatml"]))
def test_mutated_files_never_crash_the_tokenizer_checks(folder, case, template):
    from tests.tiny import tiny_tokenizer

    _read_check_convert(folder, case, tiny_tokenizer(template))
