import json
import sys
import types
from dataclasses import dataclass

import pytest

from onthejob.data.check import (
    REFERENCE_TOKENS_PER_SECOND,
    check_examples,
    check_file,
    estimate_tokens_per_second,
    format_report,
    report_to_json,
)
from onthejob.data.readers import read_examples
from onthejob.errors import DataError

from tests.data.helpers import shared, write_jsonl
TICKETS = "support-tickets/Bitext_Sample_Customer_Support_Training_Dataset.csv"


def chat(*turns: str, **extra) -> dict:
    """chat("s:Be nice", "u:hi", "a:hello") -> a chat record."""
    roles = {"s": "system", "u": "user", "a": "assistant", "t": "tool"}
    msgs = [{"role": roles[t[0]], "content": t[2:]} for t in turns]
    return {"messages": msgs, **extra}


def found(problems) -> list[tuple[str, str, int, int | None]]:
    return [(p.severity, p.code, p.line, p.message_index) for p in problems]


# A stand-in for data/template.py (written elsewhere): one token per word, each turn starts with a
# one-token role header, assistant words are supervised unless the turn has weight 0.
@dataclass
class FakeTokenized:
    input_ids: list[int]
    labels: list[int]

    @property
    def n_supervised(self) -> int:
        return sum(1 for t in self.labels if t != -100)


def fake_tokenize(example, tokenizer, *, train_on="all"):
    ids, labels = [], []
    for m in example.messages:
        if m["role"] == "tool" and tokenizer == "no-tools":
            raise DataError("this template has no tool role")
        words = (m.get("content") or "").split() or ["<call>"]
        learn = m["role"] == "assistant" and m.get("weight", 1) != 0
        ids += [0] + [1] * len(words)
        labels += [-100] + ([1] * len(words) if learn else [-100] * len(words))
    return FakeTokenized(ids, labels)


@pytest.fixture
def fake_template(monkeypatch):
    module = types.ModuleType("onthejob.data.template")
    module.tokenize_example = fake_tokenize
    module.supports_tools = lambda tokenizer: True
    monkeypatch.setitem(sys.modules, "onthejob.data.template", module)


# ---------------------------------------------------------------------------- acceptance


def test_toy_file_has_no_errors_and_exactly_the_cookbook_warnings():
    report = check_file(shared("formats/toy_chat_fine_tuning.jsonl"))
    assert report.ok and report.errors == []
    assert sorted(found(report.warnings)) == [
        ("warning", "missing_system_message", 3, None),
        ("warning", "missing_user_message", 4, None),
    ]


def test_one_run_reports_every_problem_of_a_broken_file_with_its_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        chat("s:S", "u:fine", "a:fine"),
        '{"messages": [{"role": "user", "content": "hi"}',
        {"messages": [{"content": "no role"}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]},
        chat("s:S", "u:no answer"),
    ])
    report = check_file(path)
    assert not report.ok
    assert found(report.errors) == [
        ("error", "malformed_json", 2, None),
        ("error", "message_missing_key", 3, 0),
        ("error", "unrecognized_role", 4, 0),
        ("error", "wrong_type", 5, 0),
        ("error", "example_missing_assistant_message", 6, None),
    ]
    assert all(p.fix and str(path) in str(p) for p in report.problems)


@pytest.mark.parametrize("rel, duplicates", [
    ("formats/alpaca_en_demo.json", 14),
    ("formats/identity.json", 0),
    ("formats/glaive_toolcall_en_demo.json", 35),
    ("formats/toy_chat_fine_tuning.jsonl", 0),
    ("formats/v1_sft_demo.jsonl", 1),
    (TICKETS, 0),
])
def test_shared_files_have_no_errors_and_warn_of_their_true_duplicates(rel, duplicates):
    mapping = {"instruction": "user", "response": "assistant"} if rel == TICKETS else None
    report = check_file(shared(rel), mapping=mapping)
    assert report.errors == []
    dups = [p for p in report.warnings if p.code == "duplicate"]
    assert len(dups) == duplicates
    for p in dups:  # each names an earlier example with the very same text (case aside)
        earlier = int(p.message.rsplit(":", 1)[1])
        assert earlier < p.line


@pytest.mark.slow
def test_glaive_tool_calls_check_clean_with_the_default_models_tokenizer():
    from tests.data.test_template import smollm2_tokenizer

    report = check_file(shared("formats/glaive_toolcall_en_demo.json"), tokenizer=smollm2_tokenizer())
    assert report.errors == []
    assert [p.code for p in report.warnings if p.code != "duplicate"].count("tools_inlined") == 1
    assert report.stats["supervised_tokens_total"] > 0


# ------------------------------------------------------------------------------ each check


@pytest.mark.parametrize("record, expected", [
    (chat("s:S", "u:q", "a: \n"), [("error", "empty_assistant_content", 2)]),
    (chat("s:", "u:q", "a:x"), [("error", "missing_content", 0)]),
    (chat("s:S", "a:x"), [("warning", "missing_user_message", None)]),
    (chat("u:q", "a:x"), [("warning", "missing_system_message", None)]),
    (chat("s:S", "u:q", "a:x", "u:more?"), [("warning", "not_ending_with_assistant", 3)]),
    (chat("s:S", "u:q"), [("error", "example_missing_assistant_message", None),
                          ("warning", "not_ending_with_assistant", 1)]),
])
def test_each_example_check_has_its_code_and_message_index(tmp_path, record, expected):
    report = check_file(write_jsonl(tmp_path / "d.jsonl", [record]))
    assert sorted((p.severity, p.code, p.message_index) for p in report.problems) == sorted(expected)
    assert all(p.line == 1 for p in report.problems)


def test_valid_tool_calls_and_tool_role_are_not_flagged(tmp_path):
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    record = {"messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "assistant", "content": "It is 42."},
    ], "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert check_file(write_jsonl(tmp_path / "d.jsonl", [record])).problems == []


def test_duplicates_name_the_earlier_line_exact_and_normalised(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        chat("s:S", "u:Hello there", "a:Hi"),
        chat("s:S", "u:something else", "a:Hi"),
        chat("s:S", "u:Hello there", "a:Hi"),
        chat("s:S", "u:  hello   THERE", "a:hi "),
    ])
    dups = [p for p in check_file(path).problems if p.code == "duplicate"]
    assert [(p.line, p.severity) for p in dups] == [(3, "warning"), (4, "warning")]
    assert dups[0].message == f"exact duplicate of {path}:1"
    assert dups[1].message == f"duplicate (ignoring case and whitespace) of {path}:1"


@pytest.mark.parametrize("train_on, weights, flagged", [
    ("all", [0, 0], True),
    ("all", [1, 0], False),
    ("last", [1, 0], True),
    ("last", [0, 1], False),
    ("sequence", [0, 0], False),
])
def test_no_supervised_tokens_follows_weights_and_train_on(tmp_path, train_on, weights, flagged):
    record = chat("s:S", "u:q", "a:x", "u:q2", "a:y")
    record["messages"][2]["weight"], record["messages"][4]["weight"] = weights
    report = check_file(write_jsonl(tmp_path / "d.jsonl", [record]), train_on=train_on)
    assert ("no_supervised_tokens" in {p.code for p in report.errors}) is flagged


def test_unknown_train_on_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="train_on"):
        check_file(write_jsonl(tmp_path / "d.jsonl", [chat("u:q", "a:x")]), train_on="most")


def test_check_examples_merges_reader_problems_in_file_order(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [chat("s:S", "u:q"), "{oops", chat("s:S", "u:q", "a:x")])
    problems = check_examples(read_examples(path))
    assert [(p.line, p.code) for p in problems] == [
        (1, "example_missing_assistant_message"), (1, "not_ending_with_assistant"), (2, "malformed_json")]


# -------------------------------------------------------------------- tokens and statistics


def test_token_statistics_and_time_estimate(tmp_path, fake_template):
    path = write_jsonl(tmp_path / "d.jsonl", [
        chat("u:a b", "a:c"),                # 3 + 2 = 5 tokens, 1 supervised
        chat("u:a", "a:b c d"),              # 2 + 4 = 6 tokens, 3 supervised
        chat("s:s", "u:a b c", "a:d e"),     # 2 + 4 + 3 = 9 tokens, 2 supervised
    ])
    report = check_file(path, tokenizer="tok", tokens_per_second=4.0)
    stats = report.stats
    assert stats["examples"] == 3
    assert stats["messages_per_example"] == {"min": 2, "median": 2, "p90": 3, "max": 3}
    assert stats["tokens_per_example"] == {"min": 5, "median": 6, "p90": 9, "max": 9}
    assert stats["supervised_tokens_per_example"] == {"min": 1, "median": 2, "p90": 3, "max": 3}
    assert (stats["tokens_total"], stats["supervised_tokens_total"]) == (20, 6)
    assert stats["seconds_per_epoch"] == 5.0
    text = format_report(report)
    assert "tokens per example" in text and "total tokens: 20, supervised: 6" in text and "0m 05s" in text


def test_throughput_default_scales_with_model_size():
    assert estimate_tokens_per_second() == REFERENCE_TOKENS_PER_SECOND
    assert estimate_tokens_per_second(270_000_000) == pytest.approx(REFERENCE_TOKENS_PER_SECOND / 2)


def test_too_long_is_an_error_only_when_every_supervised_token_is_cut(tmp_path, fake_template):
    path = write_jsonl(tmp_path / "d.jsonl", [
        chat("u:a b", "a:c d e"),             # 3 + 4 = 7 tokens; at 5, 1 of 3 supervised survives
        chat("u:a b c d e f", "a:g h"),       # 7 + 3 = 10 tokens; at 5, nothing supervised survives
        chat("u:a", "a:b"),                   # 4 tokens: fits
    ])
    problems = [p for p in check_file(path, tokenizer="tok", max_seq_len=5).problems if p.code == "too_long"]
    assert [(p.line, p.severity) for p in problems] == [(1, "warning"), (2, "error")]
    assert "2 over max_seq_len 5; 2 of 3 supervised tokens would be cut" in problems[0].message


def test_tokenizer_counts_decide_supervision_and_template_errors_are_reported(tmp_path, fake_template):
    record = chat("s:S", "u:q", "a:x")
    record["messages"][2]["weight"] = 0
    tool_record = chat("s:S", "u:q2", "a:", "t:result", "a:y")
    tool_record["messages"][2] = {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    path = write_jsonl(tmp_path / "d.jsonl", [record, tool_record])
    report = check_file(path, tokenizer="no-tools")
    assert found(report.errors) == [("error", "no_supervised_tokens", 1, None),
                                    ("error", "template_error", 2, None)]
    assert "no tool role" in report.errors[1].message


@pytest.mark.parametrize("template, inlined", [("chatml", True), ("llama3", False)])
def test_tools_inlined_is_one_warning_per_file(tmp_path, template, inlined):
    from tests.tiny import tiny_tokenizer

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    records = [{"messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": f"q{i}"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "assistant", "content": "It is 42."},
    ], "tools": [{"type": "function", "function": {"name": "f"}}]} for i in range(3)]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    report = check_file(path, tokenizer=tiny_tokenizer(template))
    assert report.errors == []
    expected = [("warning", "tools_inlined", 0, None)] if inlined else []
    assert found(report.warnings) == expected
    if inlined:
        assert "no tool support" in report.warnings[0].message and "<tool_call>" in report.warnings[0].message


def test_real_template_with_a_tiny_tokenizer():
    from tests.tiny import tiny_tokenizer

    report = check_file(shared("formats/toy_chat_fine_tuning.jsonl"), tokenizer=tiny_tokenizer("chatml"))
    assert report.ok
    stats = report.stats
    assert 0 < stats["supervised_tokens_total"] < stats["tokens_total"]
    assert stats["tokens_per_example"]["max"] >= stats["tokens_per_example"]["min"] > 0


# ---------------------------------------------------------------------------------- output


def test_human_report_groups_problems_caps_lists_and_colours_on_request(tmp_path):
    records = [chat("s:S", "u:q", "a:x")] + ["{"] * 12
    report = check_file(write_jsonl(tmp_path / "d.jsonl", records))
    plain = format_report(report, color=False)
    assert "error: malformed_json (12)" in plain and "... and 2 more" in plain
    assert f"{tmp_path / 'd.jsonl'}:2: invalid JSON" in plain
    assert "\033[" not in plain and "\033[31m" in format_report(report, color=True)
    assert "messages per example" in plain


def test_json_report_is_serialisable_and_complete(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [chat("u:q", "a:x"), "{"])
    data = json.loads(json.dumps(report_to_json(check_file(path))))
    assert data["ok"] is False and data["format"] == "chat"
    assert (data["errors"], data["warnings"]) == (1, 1)
    assert [(p["code"], p["line"]) for p in data["problems"]] == [("missing_system_message", 1), ("malformed_json", 2)]
    assert data["stats"]["examples"] == 1
