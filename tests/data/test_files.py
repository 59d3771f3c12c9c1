"""What a data path is, how its bytes decode and how big a record may be (data/files.py)."""

import json

import pytest

from onthejob.data import files
from onthejob.data.check import check_file
from onthejob.data.readers import read_examples
from onthejob.errors import DataError

from tests.data.helpers import write_jsonl

GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def codes(result) -> list[tuple[str, str, int]]:
    return [(p.severity, p.code, p.line) for p in result.problems]


# ---------------------------------------------------------------------------- what the path is


def test_a_directory_is_named_as_one(tmp_path):
    with pytest.raises(DataError, match=f"^{tmp_path}: is a directory"):
        read_examples(tmp_path)


def test_a_symlink_loop_is_named_as_one(tmp_path):
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match="loop.jsonl: a symlink loop"):
        read_examples(loop)


def test_a_broken_symlink_names_its_target(tmp_path):
    link = tmp_path / "d.jsonl"
    link.symlink_to(tmp_path / "gone.jsonl")
    with pytest.raises(DataError, match="d.jsonl: a broken symlink .*gone.jsonl"):
        read_examples(link)


# ----------------------------------------------------------------------------------- encodings


def test_invalid_utf8_in_jsonl_is_a_problem_on_its_line_with_the_byte_column(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b'\n{"messages": "ab\xffc"}\n' + json.dumps(GOOD).encode() + b"\n")
    result = read_examples(path)
    assert codes(result) == [("error", "invalid_utf8", 2)]
    assert "byte column 17" in result.problems[0].message and [ex.line for ex in result.examples] == [1, 3]


@pytest.mark.parametrize("name, text", [
    ("a.json", b'[\n {"instruction": "i", "output": "o"},\n {"instruction": "\xc3(", "output": "o"}\n]'),
    ("t.csv", b"q,a\nhello,world\nbad \xff,x\n"),
])
def test_invalid_utf8_in_a_file_read_whole_names_file_line_and_byte_column(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text)
    column = 19 if name == "a.json" else 5
    with pytest.raises(DataError, match=f"{path}:3: not UTF-8 text .*byte column {column}"):
        read_examples(path, mapping={"q": "user", "a": "assistant"} if name == "t.csv" else None)


def test_utf16_is_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(GOOD).encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16"):
        read_examples(path)


# ------------------------------------------------------------------------------- duplicate keys


def test_a_duplicate_key_is_a_warning_naming_file_line_and_key(tmp_path):
    dup = '{"messages": [{"role": "user", "content": "q", "content": "q2"}, {"role": "assistant", "content": "a"}]}'
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, dup])
    result = read_examples(path)
    assert codes(result) == [("warning", "duplicate_key", 2)]
    assert str(result.problems[0]).startswith(f"{path}:2: warning: duplicate_key: key 'content'")
    assert result.examples[1].messages[0]["content"] == "q2"  # the last value, as json.loads


def test_duplicate_keys_in_a_json_array_name_the_record_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n{"instruction": "i", "output": "o"},\n{"instruction": "i", "output": "o", "output": "p"}\n]')
    assert codes(read_examples(path)) == [("warning", "duplicate_key", 3)]


# --------------------------------------------------------------------------------- size limits


def test_a_line_over_the_limit_is_a_problem_naming_the_limit_and_how_to_raise_it(tmp_path, monkeypatch):
    monkeypatch.setenv(files.LINE_LIMIT_VAR, "0.001")  # 1048 bytes
    big = {"messages": [{"role": "user", "content": "x" * 3000}, {"role": "assistant", "content": "a"}]}
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, big, GOOD])
    report = check_file(path)
    assert [(p.code, p.line) for p in report.errors] == [("record_too_large", 2)]
    assert "over the 0.0 MiB limit" in report.errors[0].message
    assert f"{files.LINE_LIMIT_VAR}=1" in report.errors[0].fix
    assert [ex.line for ex in report.examples] == [1, 3]
    monkeypatch.setenv(files.LINE_LIMIT_VAR, "1")
    assert check_file(path).errors == []


def test_the_default_line_limit_is_8_mib_and_memory_stays_bounded(tmp_path):
    path = tmp_path / "d.jsonl"
    with open(path, "w") as f:
        f.write('{"messages": [{"role": "user", "content": "' + "x" * (9 << 20) + '"}]}\n')
        f.write(json.dumps(GOOD) + "\n")
    lines = list(files.binary_lines(path, str(path)))
    assert lines[0][1].code == "record_too_large" and "9.0 MiB, over the 8.0 MiB limit" in lines[0][1].message
    assert [ex.line for ex in read_examples(path).examples] == [2]


def test_a_record_of_a_json_array_over_the_limit_is_a_problem(tmp_path, monkeypatch):
    monkeypatch.setenv(files.LINE_LIMIT_VAR, "0.001")
    records = [{"instruction": "i", "output": "o"}, {"instruction": "x" * 3000, "output": "o"},
               {"instruction": "i2", "output": "o"}]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(records, indent=0))
    result = read_examples(path)
    assert [p.code for p in result.problems] == ["record_too_large"] and len(result.examples) == 2


@pytest.mark.parametrize("text", ['[{"instruction": "i", "output": "o"}]', '{\n"data": [{"prompt": "p", "completion": "c"}]}'])
def test_a_whole_file_json_over_the_file_limit_is_one_clear_error(tmp_path, monkeypatch, text):
    path = tmp_path / "a.json"
    path.write_text(text + " " * 2000)
    monkeypatch.setenv(files.FILE_LIMIT_VAR, "0.001")
    with pytest.raises(DataError, match=rf"a.json: .* over the 0.0 MiB limit for a file read whole.*JSONL.*"
                                        rf"{files.FILE_LIMIT_VAR}=1"):
        read_examples(path)
    monkeypatch.setenv(files.FILE_LIMIT_VAR, "1")
    assert len(read_examples(path).examples) == 1


def test_jsonl_is_read_line_by_line_whatever_the_file_limit(tmp_path, monkeypatch):
    monkeypatch.setenv(files.FILE_LIMIT_VAR, "0.0001")
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD] * 20)
    assert len(read_examples(path).examples) == 20


@pytest.mark.parametrize("value", ["lots", "-1", "0", "nan"])
def test_a_limit_that_is_not_a_size_is_a_data_error_naming_the_variable(tmp_path, monkeypatch, value):
    monkeypatch.setenv(files.LINE_LIMIT_VAR, value)
    with pytest.raises(DataError, match=f"{files.LINE_LIMIT_VAR}='{value}' is not a size in MiB"):
        read_examples(write_jsonl(tmp_path / "d.jsonl", [GOOD]))


def test_records_nested_in_an_object_are_checked_one_by_one(tmp_path):
    good = {"prompt": "p", "completion": "c"}
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 1, "data": [good, {"prompt": "\ud83d", "completion": "c"}, good]}, indent=1))
    result = read_examples(path)
    assert codes(result) == [("error", "lone_surrogate", 2)] and [ex.line for ex in result.examples] == [1, 3]
