import json

import pytest

from onthejob.data import readers
from onthejob.data.readers import FORMATS, convert, read_examples, record_format, register_format
from onthejob.data.schema import Example, ReadResult
from onthejob.errors import DataError

from tests.data.helpers import shared, write_jsonl
TICKETS = "support-tickets/Bitext_Sample_Customer_Support_Training_Dataset.csv"
TICKET_MAP = {"instruction": "user", "response": "assistant"}


def codes(result: ReadResult) -> list[tuple[str, int, int | None]]:
    return [(p.code, p.line, p.message_index) for p in result.problems]


# ------------------------------------------------------------------------------------- formats


def test_chat_keeps_tools_and_normalises_parts_and_loss_weight(tmp_path):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    record = {"tools": tools, "messages": [
        {"role": "user", "content": [{"type": "text", "value": "a"}, {"type": "text", "text": "b"}],
         "loss_weight": 0.0},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "2"},
        {"role": "assistant", "content": "done", "weight": 1},
    ]}
    result = read_examples(write_jsonl(tmp_path / "d.jsonl", [record]))
    assert result.format == "chat" and result.problems == []
    (ex,) = result.examples
    assert ex.tools == tools and ex.line == 1 and ex.source == str(tmp_path / "d.jsonl")
    assert ex.messages == [
        {"role": "user", "content": "ab", "weight": 0},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]},
        {"role": "tool", "content": "2", "tool_call_id": "c1"},
        {"role": "assistant", "content": "done", "weight": 1},
    ]


def test_alpaca_array_with_input_system_history_and_file_lines(tmp_path):
    records = [
        {"instruction": "Sum", "input": "1 2", "output": "3", "system": "Be terse."},
        {"instruction": "Hi", "input": "", "output": "Hello", "history": [["q", "a"]]},
    ]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(records, indent=2))
    result = read_examples(path)
    assert result.format == "alpaca" and result.problems == []
    first, second = result.examples
    assert first.messages == [{"role": "system", "content": "Be terse."},
                              {"role": "user", "content": "Sum\n\n1 2"},
                              {"role": "assistant", "content": "3"}]
    assert second.messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                               {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    lines = path.read_text().split("\n")
    assert lines[first.line - 1].strip() == "{" and lines[second.line - 1].strip() == "{"
    assert (first.line, second.line) == (2, 8)


def test_sharegpt_function_calls_and_observations_become_openai_shape(tmp_path):
    tool = {"name": "weather", "description": "d", "parameters": {"type": "object"}}
    record = {"tools": json.dumps([tool]), "system": "S", "conversations": [
        {"from": "human", "value": "Weather?"},
        {"from": "function_call", "value": json.dumps({"name": "weather", "arguments": {"city": "P"}})},
        {"from": "observation", "value": "sunny"},
        {"from": "gpt", "value": "Sunny."},
    ]}
    result = read_examples(write_jsonl(tmp_path / "s.jsonl", [record]))
    assert result.format == "sharegpt" and result.problems == []
    (ex,) = result.examples
    assert ex.tools == [{"type": "function", "function": tool}]
    call = {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": '{"city": "P"}'}}
    assert ex.messages == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_0"},
        {"role": "assistant", "content": "Sunny."},
    ]


def test_prompt_completion_plain_and_conversational(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "2+2?", "completion": "4"},
        {"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yo"}]},
    ])
    result = read_examples(path, system="Sys")
    assert result.format == "prompt_completion" and result.problems == []
    assert [ex.messages for ex in result.examples] == [
        [{"role": "system", "content": "Sys"}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4"}],
        [{"role": "system", "content": "Sys"}, {"role": "user", "content": "hi"},
         {"role": "assistant", "content": "yo"}],
    ]


def test_csv_multiline_fields_report_the_line_each_row_starts_on(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('q,a,other\n"one\nline two",ans1,x\nq2,"a\n\nb",y\nq3,a3,z\n')
    result = read_examples(path, mapping={"q": "user", "a": "assistant"}, system="Help.")
    assert result.format == "csv" and result.problems == []
    assert [ex.line for ex in result.examples] == [2, 4, 7]
    assert result.examples[0].messages == [{"role": "system", "content": "Help."},
                                           {"role": "user", "content": "one\nline two"},
                                           {"role": "assistant", "content": "ans1"}]
    assert result.examples[1].messages[-1]["content"] == "a\n\nb"


def test_tsv_by_extension_and_short_rows_are_problems(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("q\ta\nhello, there\thi; you\nonly-one-field\n")
    result = read_examples(path, mapping={"q": "user", "a": "assistant"})
    assert result.examples[0].messages[0]["content"] == "hello, there"
    assert codes(result) == [("wrong_type", 3, None)]


def test_csv_without_mapping_names_the_columns_and_the_flag(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("question,answer\nq,a\n")
    with pytest.raises(DataError) as err:
        read_examples(path)
    text = str(err.value)
    assert "question, answer" in text and "--map COLUMN=user --map COLUMN=assistant" in text
    with pytest.raises(DataError, match="no column 'nope'"):
        read_examples(path, mapping={"nope": "user", "answer": "assistant"})
    with pytest.raises(DataError, match="role must be"):
        read_examples(path, mapping={"question": "human", "answer": "assistant"})


def test_records_under_a_key_of_a_json_object(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 1, "data": [{"prompt": "p", "completion": "c"}] * 2}))
    result = read_examples(path)
    assert result.format == "prompt_completion" and [ex.line for ex in result.examples] == [1, 2]


# ---------------------------------------------------------------------------- detection, errors


def test_format_override_wins_over_detection(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [], "prompt": "p", "completion": "c"}])
    assert read_examples(path, format="prompt_completion").examples[0].messages[0]["content"] == "p"
    assert read_examples(path).format == "chat"


@pytest.mark.parametrize("setup, match", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_text(""), "empty"),
    (lambda p: p.write_text("\n  \n"), "empty"),
    (lambda p: p.write_text('{"text": "x"}\n{"body": 1}\n'), r"cannot tell the format.*\['text'\].*--format"),
    (lambda p: p.write_bytes(b'[{"messages": "\xff"}]'), "d.jsonl:1: not UTF-8"),
])
def test_file_level_faults_raise_one_data_error(tmp_path, setup, match):
    path = tmp_path / "d.jsonl"
    setup(path)
    with pytest.raises(DataError, match=match):
        read_examples(path)


def test_detection_looks_past_a_faulty_first_record(tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    result = read_examples(write_jsonl(tmp_path / "d.jsonl", ["{oops", {"msgs": []}, good]))
    assert result.format == "chat" and [ex.line for ex in result.examples] == [3]
    assert codes(result) == [("malformed_json", 1, None), ("missing_messages_list", 2, None)]


def test_unknown_format_lists_the_known_ones(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": []}])
    with pytest.raises(DataError) as err:
        read_examples(path, format="parquet")
    assert all(name in str(err.value) for name in ("chat", "alpaca", "sharegpt", "prompt_completion", "csv"))


def test_a_third_party_format_registers_like_the_builtins(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "FORMATS", dict(FORMATS))
    monkeypatch.setattr(readers, "DETECT_KEYS", dict(readers.DETECT_KEYS))

    @record_format("qa", keys=("q", "a"))
    def qa_record(record, faults, opts):
        return [{"role": "user", "content": record["q"]}, {"role": "assistant", "content": record["a"]}], None

    result = read_examples(write_jsonl(tmp_path / "d.jsonl", [{"q": "1", "a": "2"}]))
    assert result.format == "qa" and result.examples[0].messages[1] == {"role": "assistant", "content": "2"}


def test_a_third_party_reader_registers_by_extension_and_reuses_message_validation(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "FORMATS", dict(FORMATS))
    monkeypatch.setattr(readers, "EXTENSIONS", dict(readers.EXTENSIONS))

    @register_format("one_record", extensions=(".one",))
    def read_one(path, opts):
        faults = readers.Faults(opts.source, 1)  # the message helpers live in data/messages.py
        messages = readers.chat_messages(json.loads(path.read_text()), faults)
        examples = [] if faults.problems else [Example(messages, None, opts.source, 1)]
        return ReadResult(examples, faults.problems)

    path = tmp_path / "d.one"
    path.write_text(json.dumps([{"role": "user", "content": "q"}, {"role": "robot", "content": "a"}]))
    result = read_examples(path)
    assert result.format == "one_record" and result.examples == []
    assert codes(result) == [("unrecognized_role", 1, 1)]


def test_every_malformed_line_is_reported_and_reading_goes_on(tmp_path):
    ok = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = write_jsonl(tmp_path / "d.jsonl", ['{"messages": [', ok, "", "not json", ok])
    result = read_examples(path)
    assert codes(result) == [("malformed_json", 1, None), ("malformed_json", 4, None)]
    assert [ex.line for ex in result.examples] == [2, 5]


def test_broken_json_array_reports_the_line_of_the_fault(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n {"instruction": "i", "output": "o"},\n {"instruction": "i2", "output": }\n]\n')
    result = read_examples(path)
    assert len(result.examples) == 1 and codes(result) == [("malformed_json", 3, None)]


@pytest.mark.parametrize("record, code, index", [
    ([1, 2], "data_type", None),
    ({"msgs": []}, "missing_messages_list", None),
    ({"messages": []}, "missing_messages_list", None),
    ({"messages": ["hi"]}, "data_type", 0),
    ({"messages": [{"content": "x"}]}, "message_missing_key", 0),
    ({"messages": [{"role": "user"}]}, "message_missing_key", 0),
    ({"messages": [{"role": "user", "content": "x", "mood": 1}]}, "message_unrecognized_key", 0),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "x"}]}, "unrecognized_role", 1),
    ({"messages": [{"role": "user", "content": None}]}, "missing_content", 0),
    ({"messages": [{"role": "user", "content": 42}]}, "wrong_type", 0),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "wrong_type", 0),
    ({"messages": [{"role": "assistant", "content": "x", "weight": 0.5}]}, "wrong_type", 0),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": "f()"}]}, "wrong_type", 0),
    ({"messages": [{"role": "user", "content": "x"}], "tools": "{not json"}, "wrong_type", None),
])
def test_each_structural_fault_has_its_code_line_and_message_index(tmp_path, record, code, index):
    filler = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    result = read_examples(write_jsonl(tmp_path / "d.jsonl", [filler, record]), format="chat")
    assert codes(result) == [(code, 2, index)]
    assert [ex.line for ex in result.examples] == [1]  # a faulty record never becomes an example
    assert str(result.problems[0]).startswith(f"{tmp_path / 'd.jsonl'}:2")


@pytest.mark.parametrize("fmt, record, code", [
    ("alpaca", {"instruction": "i"}, "missing_field"),
    ("alpaca", {"instruction": "i", "output": 3}, "wrong_type"),
    ("alpaca", {"instruction": "i", "output": "o", "history": ["q"]}, "wrong_type"),
    ("prompt_completion", {"prompt": "p"}, "missing_field"),
    ("sharegpt", {"conversations": [{"from": "alien", "value": "x"}]}, "unrecognized_role"),
    ("sharegpt", {"conversations": [{"from": "function_call", "value": "{oops"}]}, "malformed_json"),
    ("sharegpt", {"conversations": [{"value": "x"}]}, "message_missing_key"),
])
def test_other_formats_report_their_faults(tmp_path, fmt, record, code):
    result = read_examples(write_jsonl(tmp_path / "d.jsonl", [record]), format=fmt)
    assert [p.code for p in result.problems] == [code] and result.examples == []


# ----------------------------------------------------------------------------------- convert


def test_convert_writes_canonical_jsonl(tmp_path):
    src = tmp_path / "a.json"
    src.write_text(json.dumps([{"instruction": "i", "input": "", "output": "o"}]))
    assert convert(src, tmp_path / "out.jsonl") == 1
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"messages": [{"role": "user", "content": "i"}, {"role": "assistant", "content": "o"}]}]
    assert read_examples(tmp_path / "out.jsonl").format == "chat"


def test_convert_refuses_input_with_errors_and_writes_nothing(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", ["{", "{", {"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(DataError, match=r"(?s)2 error\(s\).*ojt data check.*d.jsonl:1: error: malformed_json"):
        convert(src, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


# ------------------------------------------------------------------------------- shared files


@pytest.mark.parametrize("rel, fmt, n, last_line", [
    ("formats/alpaca_en_demo.json", "alpaca", 999, 4992),
    ("formats/identity.json", "alpaca", 91, 452),
    ("formats/glaive_toolcall_en_demo.json", "sharegpt", 300, 9137),
    ("formats/toy_chat_fine_tuning.jsonl", "chat", 5, 5),
    ("formats/v1_sft_demo.jsonl", "chat", 500, 500),
    (TICKETS, "csv", 4514, 31221),
])
def test_shared_files_are_read_completely_without_problems(rel, fmt, n, last_line):
    path = shared(rel)
    result = read_examples(path, mapping=TICKET_MAP if fmt == "csv" else None)
    assert result.format == fmt and result.problems == []
    assert len(result.examples) == n and result.examples[-1].line == last_line


def test_shared_glaive_tool_calls_and_v1_weights():
    glaive = read_examples(shared("formats/glaive_toolcall_en_demo.json"))
    calls = [m for ex in glaive.examples for m in ex.messages if m.get("tool_calls")]
    tools = [m for ex in glaive.examples for m in ex.messages if m["role"] == "tool"]
    assert len(calls) == len(tools) == 211
    assert all(json.loads(m["tool_calls"][0]["function"]["arguments"]) is not None for m in calls)
    assert all(t["function"]["name"] for ex in glaive.examples for t in ex.tools or [])
    v1 = read_examples(shared("formats/v1_sft_demo.jsonl"))
    assert {(m["role"], m["weight"]) for ex in v1.examples for m in ex.messages} == {("user", 0), ("assistant", 1)}


# ------------------------------------------------------------------------- tool results


CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize("messages, index", [
    ([{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}], 1),
    ([{"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}], 0),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [CALL]},
      {"role": "assistant", "content": "hm"}, {"role": "function", "content": "r"}], 3),
])
def test_a_tool_message_that_answers_no_tool_call_is_an_error(tmp_path, messages, index):
    result = read_examples(write_jsonl(tmp_path / "d.jsonl", [{"messages": messages}]))
    assert codes(result) == [("tool_without_call", 1, index)] and result.examples == []
    assert "answers no tool call" in result.problems[0].message


def test_tool_messages_after_a_tool_call_are_fine(tmp_path):
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [CALL, CALL]},
                {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"},
                {"role": "assistant", "content": "a"}]
    assert read_examples(write_jsonl(tmp_path / "d.jsonl", [{"messages": messages}])).problems == []


def test_a_sharegpt_observation_without_a_function_call_is_an_error(tmp_path):
    turns = [{"from": "human", "value": "q"}, {"from": "observation", "value": "r"}, {"from": "gpt", "value": "a"}]
    result = read_examples(write_jsonl(tmp_path / "s.jsonl", [{"conversations": turns}]))
    assert codes(result) == [("tool_without_call", 1, 1)] and result.examples == []
