"""One bad record is one problem in the report (file:line, what to fix); the other records are
still read and checked. Nothing a data file holds may become an internal error (issue #13)."""

import json
import os

import pytest

from onthejob.data.check import check_file
from onthejob.data.readers import read_examples
from onthejob.errors import DataError

from tests.data.helpers import write_jsonl

GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
GOOD_LINE = json.dumps(GOOD)


def problems(report) -> list[tuple[str, int]]:
    return [(p.code, p.line) for p in report.problems if p.severity == "error"]


def between_good_lines(tmp_path, bad: str, name: str = "d.jsonl"):
    """A JSONL file: a good record, ``bad`` on line 2, a different good record on line 3."""
    other = json.dumps({"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]})
    path = tmp_path / name
    path.write_text(f"{GOOD_LINE}\n{bad}\n{other}\n", encoding="utf-8")
    return path


BAD_LINES = {
    "lone_surrogate": '{"messages": [{"role": "user", "content": "\\ud83d"}, {"role": "assistant", "content": "a"}]}',
    "too_deep": "[" * 10_000 + "]" * 10_000,
    "too_deep_in_record": '{"messages": ' + "[" * 5_000 + "]" * 5_000 + "}",
    "number_too_long": '{"messages": [{"role": "user", "content": "q", "weight": ' + "1" * 5000 + "}]}",
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_bad_jsonl_line_is_one_problem_and_the_others_are_checked(tmp_path, case):
    path = between_good_lines(tmp_path, BAD_LINES[case])
    report = check_file(path)
    assert [line for _code, line in problems(report)] == [2], report.problems
    assert [ex.line for ex in report.examples] == [1, 3]
    (problem,) = report.errors
    assert str(problem).startswith(f"{path}:2: error:") and problem.fix


def test_lone_surrogate_names_the_escape_and_a_surrogate_pair_is_fine(tmp_path):
    path = between_good_lines(tmp_path, BAD_LINES["lone_surrogate"])
    (problem,) = read_examples(path).errors
    assert problem.code == "lone_surrogate" and "\\ud83d" in problem.message
    pair = '{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}, {"role": "assistant", "content": "a"}]}'
    result = read_examples(between_good_lines(tmp_path, pair, "pair.jsonl"))
    assert result.problems == [] and result.examples[1].messages[0]["content"] == "\U0001f600"


def test_number_too_long_says_how_many_digits(tmp_path):
    (problem,) = read_examples(between_good_lines(tmp_path, BAD_LINES["number_too_long"])).errors
    assert problem.code == "number_too_long" and "5000 digits" in problem.message


def test_deep_records_in_a_json_array_are_skipped_and_reading_goes_on(tmp_path):
    good = {"instruction": "i", "output": "o"}
    text = "[\n" + json.dumps(good) + ",\n" + '{"instruction": ' + "[" * 5000 + "]" * 5000 + ', "output": "o"},\n'
    text += '{"instruction": "i", "output": ' + "9" * 5000 + "},\n" + json.dumps({**good, "output": "o2"}) + "\n]\n"
    path = tmp_path / "a.json"
    path.write_text(text)
    result = read_examples(path)
    assert [(p.code, p.line) for p in result.problems] == [("too_deep", 3), ("number_too_long", 4)]
    assert [ex.line for ex in result.examples] == [2, 5]


@pytest.mark.parametrize("turn", [{"from": ["human"], "value": "q"}, {"from": {"a": 1}, "value": "q"},
                                  {"from": None, "value": "q"}, {"from": 3, "value": "q"}])
def test_sharegpt_from_that_is_not_a_string_is_a_problem(tmp_path, turn):
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    path = write_jsonl(tmp_path / "s.jsonl", [good, {"conversations": [turn, {"from": "gpt", "value": "a"}]}, good])
    result = read_examples(path)
    assert [(p.code, p.line, p.message_index) for p in result.problems] == [("wrong_type", 2, 0)]
    assert [ex.line for ex in result.examples] == [1, 3]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_csv_is_one_data_error_naming_the_path(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("q,a\nhello,world\n")
    path.chmod(0)
    with pytest.raises(DataError, match=f"{path}: cannot read the file: permission denied"):
        read_examples(path, mapping={"q": "user", "a": "assistant"})


@pytest.mark.parametrize("name", ["t.csv", "d.jsonl", "a.json"])
def test_a_file_that_cannot_be_opened_is_one_data_error_naming_the_path(tmp_path, monkeypatch, name):
    # Simulated, since tests may run as root (who reads a chmod 000 file all the same).
    path = tmp_path / name
    path.write_text("q,a\nhello,world\n" if name.endswith(".csv") else GOOD_LINE + "\n")
    real_open = open

    def refuse(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(DataError, match=f"{path}: cannot read the file: permission denied"):
        read_examples(path, mapping={"q": "user", "a": "assistant"} if name.endswith(".csv") else None)


@pytest.mark.parametrize("tools", [[{"type": "function", "function": {"name": 5}}], [{"name": ["x"]}],
                                   [{"function": [1]}], [{"type": "function", "function": {"parameters": {}}}]])
def test_a_tool_without_a_string_name_is_a_problem_even_for_a_template_that_renders_tools(tmp_path, tools):
    from tests.tiny import tiny_tokenizer

    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, {**GOOD, "tools": tools}])
    report = check_file(path, tokenizer=tiny_tokenizer("llama3"))
    assert [(p.code, p.line) for p in report.errors] == [("wrong_type", 2)]
    assert "tools" in report.errors[0].message


NESTED_JSON = {  # (tools string, function_call value)
    "deep": ("[" * 5000 + "]" * 5000, "[" * 5000 + "]" * 5000),
    "number": ('[{"name": "f", "x": ' + "7" * 5000 + "}]", '{"name": "f", "arguments": {"x": ' + "7" * 5000 + "}}"),
    "surrogate": ('[{"name": "f", "description": "\\udc00"}]', '{"name": "f", "arguments": {"x": "\\udc00"}}'),
}


@pytest.mark.parametrize("case", sorted(NESTED_JSON))
def test_json_inside_a_string_is_decoded_as_carefully_as_a_record(tmp_path, case):
    tools, call = NESTED_JSON[case]
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    calls = {"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": call},
                               {"from": "observation", "value": "r"}, {"from": "gpt", "value": "a"}]}
    path = write_jsonl(tmp_path / "s.jsonl", [good, {**good, "tools": tools}, calls])
    report = check_file(path)
    assert [(p.code, p.line, p.message_index) for p in report.errors] == [
        ("wrong_type", 2, None), ("malformed_json", 3, 1)]
    assert [ex.line for ex in report.examples] == [1]


def test_tool_call_arguments_that_are_no_plain_json_still_render(tmp_path):
    from tests.tiny import tiny_tokenizer

    args = ["[" * 5000 + "]" * 5000, '{"x": "\\udc00"}', '{"x": ' + "7" * 5000 + "}"]
    records = [{"messages": [{"role": "user", "content": "q"},
                             {"role": "assistant", "content": None, "tool_calls": [
                                 {"type": "function", "function": {"name": "f", "arguments": a}}]},
                             {"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}]}
               for a in args]
    report = check_file(write_jsonl(tmp_path / "d.jsonl", records), tokenizer=tiny_tokenizer("chatml"))
    assert report.errors == [] and len(report.examples) == 3


# --------------------------------------------------------------------------------- through the CLI


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_ojt_data_check_reports_the_bad_line_and_exits_with_the_data_code(capsys, tmp_path, case):
    from tests.test_cli import EXIT, run

    path = between_good_lines(tmp_path, BAD_LINES[case])
    code, err, out = run(capsys, ["data", "check", str(path), "--no-stats"])
    assert code == EXIT["data"] and err == []
    assert out.startswith(f"{path}: chat, 2 examples, 1 errors") and f"{path}:2: " in out


@pytest.mark.parametrize("command", [["data", "check", "--no-stats"], ["data", "convert", "--out", "OUT"],
                                     ["data", "split", "--eval-split", "0.5", "--train-out", "OUT", "--eval-out", "OUT2"]])
def test_ojt_data_commands_name_an_unreadable_file_or_a_directory_in_one_line(capsys, tmp_path, monkeypatch, command):
    from tests.test_cli import one_line

    path = tmp_path / "t.csv"
    path.write_text("q,a\nhello,world\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                        if os.fspath(f) == os.fspath(path) else real_open(f, *a, **k))
    argv = [*command[:2], str(path), *(str(tmp_path / c) if c.startswith("OUT") else c for c in command[2:]),
            "--map", "q=user", "--map", "a=assistant"]
    one_line(capsys, argv, "data", f"{path}: cannot read the file: permission denied")
    argv[2] = str(tmp_path)
    one_line(capsys, argv, "data", f"{tmp_path}: is a directory")


def test_a_system_prompt_with_undecodable_bytes_is_a_data_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    with pytest.raises(DataError, match="--system holds bytes that are not UTF-8"):
        read_examples(path, system=b"be \xff".decode("utf-8", "surrogateescape"))  # as Python decodes argv
