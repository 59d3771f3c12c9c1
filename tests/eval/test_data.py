import json

import pytest

from onthejob.errors import DataError
from onthejob.eval.data import from_token_presence, read_eval


def write(path, lines):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def chat(q="How long is probation?", a="Three months.", **extra):
    return {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q},
                         {"role": "assistant", "content": a}], **extra}


def test_read_eval_splits_off_the_reference_and_keeps_the_checks(tmp_path):
    schema = {"type": "object"}
    path = write(tmp_path / "e.jsonl", [chat(facts=["three months"], id=7), "",
                                        chat("Give JSON", "{}", regex="^\\{", json_schema=schema)])
    first, second = read_eval(path)
    assert first.line == 1 and second.line == 3  # blank lines count
    assert [m["role"] for m in first.messages] == ["system", "user"]
    assert first.reference == "Three months." and first.question == "How long is probation?"
    assert first.facts == ["three months"] and first.regex is None and first.json_schema is None
    assert first.raw["id"] == 7
    assert second.regex == "^\\{" and second.json_schema == schema and second.facts == []


@pytest.mark.parametrize("bad, message", [
    ("{not json", "not valid JSON"),
    ({"messages": [{"role": "user", "content": "q"}]}, "last message must be the reference"),
    ({"messages": [{"role": "assistant", "content": "a"}]}, "no user message"),
    (chat(facts="three months"), "'facts' must be a list"),
    (chat(facts=["three months", ""]), r"'facts'\[1\] .*non-empty strings or non-empty lists"),
    (chat(facts=[[]]), r"'facts'\[0\] is \[\]"),
    (chat(facts=[["ten days", 10]]), r"'facts'\[0\]"),
    (chat(facts=[[["nested"]]]), r"'facts'\[0\]"),
    (chat(facts=["x"] * 101), "101 entries, at most 100"),
    (chat(facts=[["x"] * 21]), r"'facts'\[0\] has 21 alternatives, at most 20"),
    (chat(facts=["ok", ["ok", "y" * 2001]]), r"'facts'\[1\] is longer than 2,000 characters"),
    (chat(regex="(unclosed"), "not a valid regular expression"),
    (chat(json_schema={"type": "no-such-type"}), "not a valid JSON Schema"),
    ([1, 2], "must be a JSON object"),
])
def test_bad_lines_name_file_and_line(tmp_path, bad, message):
    path = write(tmp_path / "e.jsonl", [chat(), bad])
    with pytest.raises(DataError, match=f"e.jsonl:2: .*{message}"):
        read_eval(path)


def test_facts_may_list_alternatives_up_to_the_bounds(tmp_path):
    facts = [["ten days", "10 days"], "sick leave"] + ["x"] * 98  # 100 facts
    longest = [["y" * 2000] * 20]  # 20 alternatives of 2,000 characters
    first, second = read_eval(write(tmp_path / "e.jsonl", [chat(facts=facts), chat(facts=longest)]))
    assert first.facts[:2] == [["ten days", "10 days"], "sick leave"] and len(first.facts) == 100
    assert second.facts == longest


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_eval(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no eval examples"):
        read_eval(write(tmp_path / "e.jsonl", [""]))


def test_from_token_presence_converts_rows(tmp_path):
    path = tmp_path / "tp.csv"
    path.write_text('question,answer,tokens_present,document\n'
                    'What is the probation period?,"It is 3 months,\nusually.",\"[\'3 months\']\",HR.pdf\n'
                    'Can it be extended?,"Yes.","[\'Yes\', \'\']",HR.pdf\n', encoding="utf-8")
    records = from_token_presence(path)
    assert records[0] == {"messages": [{"role": "user", "content": "What is the probation period?"},
                                       {"role": "assistant", "content": "It is 3 months,\nusually."}],
                          "facts": ["3 months"], "document": "HR.pdf"}
    assert records[1]["facts"] == ["Yes"]  # empty strings dropped
    items = read_eval(write(tmp_path / "e.jsonl", records))  # what it makes, read_eval reads
    assert items[0].facts == ["3 months"]


def test_from_token_presence_bad_rows(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer,tokens_present\nq1,a1,['x']\nq2,a2,not a list\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.csv:3: tokens_present"):
        from_token_presence(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("q,a\n1,2\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing column"):
        from_token_presence(wrong)


def test_from_token_presence_on_the_hr_data(shared_data):
    records = from_token_presence(shared_data / "hr-policy" / "CSV_files" / "token_presence_HR_Policy.csv")
    assert len(records) == 149
    assert records[0]["facts"] == ["3 months"]
    assert all(r["messages"][-1]["role"] == "assistant" for r in records)
