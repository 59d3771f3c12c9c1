"""The feedback store (what ``ojt serve`` records) and ``ojt data from-feedback``."""

import json
import sqlite3
import threading

import pytest

from onthejob import cli
from onthejob.data.feedback import MAX_TEXT, FeedbackStore, from_feedback
from onthejob.data.readers import read_examples
from onthejob.data.template import tokenize_example
from onthejob.errors import DataError
from tests.data.helpers import write_jsonl
from tests.tiny import tiny_tokenizer

TOOLS = [{"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}]
SUMS = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "what is 2 plus 2"},
        {"role": "assistant", "content": "5"}, {"role": "user", "content": "are you sure?"}]
SIX = [{"role": "user", "content": "what is 3 plus 3"}]
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "calc", "arguments": '{"x": "3+3"}'}}]}


def say(text: str) -> dict:
    return {"role": "assistant", "content": text}


def record(store: FeedbackStore, rid: str, messages: list, answer: dict, *, tools=None, created: int = 0) -> None:
    store.record_answer(rid, model="tiny", messages=messages, tools=tools, answer=answer,
                        request={"model": "tiny", "messages": messages}, created=created)


def answer_ids(db) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT response_id FROM answers ORDER BY created, rowid")]


# ------------------------------------------------------------------------------------ the store


def test_judgements_are_kept_in_order_and_returned_as_stored(tmp_path):
    store = FeedbackStore(tmp_path / "deep" / "folder" / "feedback.db")
    record(store, "r1", SUMS, say("it is 4"))
    first = store.add_feedback("r1", rating="bad", correction="4", reviewer="ann")
    second = store.add_feedback("r1", rating="good", note="fine after all", reviewer="   ")  # blank: absent
    assert first["id"].startswith("fb-") and second["id"].startswith("fb-") and first["id"] != second["id"]
    assert isinstance(first["created"], int) and first["created"] > 1_600_000_000
    assert {k: v for k, v in second.items() if k not in ("id", "created")} == {
        "response_id": "r1", "rating": "good", "correction": None, "note": "fine after all", "reviewer": None}
    assert FeedbackStore(tmp_path / "deep" / "folder" / "feedback.db").feedback("r1") == [first, second]
    with sqlite3.connect(tmp_path / "deep" / "folder" / "feedback.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unknown_response_ids_are_key_errors(tmp_path):
    store = FeedbackStore(tmp_path / "f.db")
    record(store, "r1", SUMS, say("4"))
    with pytest.raises(KeyError) as e:
        store.add_feedback("nope", rating="good")
    assert e.value.args == ("nope",)
    with pytest.raises(KeyError):
        store.feedback("nope")
    assert store.feedback("r1") == []
    assert store.answer("nope") is None


def test_a_recorded_answer_reads_back_as_given(tmp_path):
    store = FeedbackStore(tmp_path / "f.db")
    record(store, "r1", SIX, CALL, tools=TOOLS, created=7)
    assert store.answer("r1") == {"response_id": "r1", "created": 7, "model": "tiny", "messages": SIX,
                                  "tools": TOOLS, "answer": CALL}


@pytest.mark.parametrize("kwargs,message", [
    ({"rating": "meh"}, "rating must be 'good', 'bad' or null, not 'meh'"),
    ({"rating": None}, "feedback needs a rating ('good' or 'bad'), a correction or a note"),
    ({"rating": None, "correction": " \n", "note": ""}, "feedback needs a rating"),
    ({"rating": "bad", "correction": "x" * (MAX_TEXT + 1)}, "correction is 100,001 characters; at most 100,000 are kept"),
    ({"rating": "bad", "note": "x" * (MAX_TEXT + 1)}, "note is 100,001 characters"),
    ({"rating": "bad", "reviewer": "x" * 201}, "reviewer is 201 characters; at most 200"),
    ({"rating": "bad", "correction": 42}, "correction must be a string, not a number"),
    ({"rating": "bad", "note": "\ud800"}, "note holds a lone surrogate"),
])
def test_bad_feedback_is_a_value_error_and_stores_nothing(tmp_path, kwargs, message):
    store = FeedbackStore(tmp_path / "f.db")
    record(store, "r1", SUMS, say("4"))
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        store.add_feedback("r1", **kwargs)
    assert store.feedback("r1") == []
    assert store.add_feedback("r1", rating="bad", correction="x" * MAX_TEXT)["correction"] == "x" * MAX_TEXT


def test_a_malformed_or_repeated_answer_is_a_value_error(tmp_path):
    store = FeedbackStore(tmp_path / "f.db")
    record(store, "r1", SUMS, say("4"))
    with pytest.raises(ValueError, match="response 'r1' is already recorded"):
        record(store, "r1", SUMS, say("other"))
    with pytest.raises(ValueError, match="answer must be an assistant message"):
        record(store, "r2", SUMS, {"role": "user", "content": "4"})
    with pytest.raises(ValueError, match="request cannot be stored as JSON"):
        store.record_answer("r3", model="m", messages=SUMS, tools=None, answer=say("4"), request={"x": object()})
    assert answer_ids(tmp_path / "f.db") == ["r1"]


def test_past_the_bound_the_oldest_unjudged_answers_go(tmp_path):
    store = FeedbackStore(tmp_path / "f.db", max_answers=3)
    record(store, "old-judged", SUMS, say("4"), created=1)
    store.add_feedback("old-judged", rating="good")
    for i in range(2, 7):
        record(store, f"r{i}", SUMS, say("4"), created=i)
    assert answer_ids(tmp_path / "f.db") == ["old-judged", "r5", "r6"]
    with pytest.raises(KeyError):
        store.add_feedback("r2", rating="good")  # pruned
    assert len(store.feedback("old-judged")) == 1


def test_threads_record_and_judge_at_once(tmp_path):
    store = FeedbackStore(tmp_path / "f.db")
    errors = []

    def work(t: int) -> None:
        try:
            for i in range(15):
                record(store, f"t{t}-{i}", SUMS, say(str(i)))
                store.add_feedback(f"t{t}-{i}", rating="good")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(answer_ids(tmp_path / "f.db")) == 90


def test_a_file_that_is_no_database_is_refused_by_name(tmp_path):
    (tmp_path / "notes.db").write_text("just text, not SQLite\n" * 20)
    with pytest.raises(DataError, match="notes.db: cannot open the feedback database"):
        FeedbackStore(tmp_path / "notes.db")


# ------------------------------------------------------------------------------------ the export


@pytest.fixture
def judged(tmp_path):
    """Six judged answers covering every rule, one unjudged; returns (db, the stored feedback)."""
    store = FeedbackStore(tmp_path / "feedback.db")
    record(store, "r1", SUMS, say("it is 4"), tools=TOOLS, created=101)
    record(store, "r2", SUMS, say("it is 5"), tools=TOOLS, created=102)
    record(store, "r3", SIX, CALL, tools=TOOLS, created=103)
    record(store, "r4", SIX, say("6"), tools=TOOLS, created=104)
    record(store, "r5", [{"role": "user", "content": "hi"}], say("go away"), created=105)
    record(store, "r6", [{"role": "user", "content": "bye"}], say("ok"), created=106)
    record(store, "r7", [{"role": "user", "content": "unseen"}], say("ok"), created=107)
    fb = {
        "r1": store.add_feedback("r1", rating="good", reviewer="ann"),
        "r2": store.add_feedback("r2", rating="bad", note="wrong sum"),
        "r3": store.add_feedback("r3", rating="bad", correction="it is 6", reviewer="bo"),
        "r4": [store.add_feedback("r4", rating="bad"), store.add_feedback("r4", rating="good")][-1],
        "r5": store.add_feedback("r5", rating=None, correction="Hello! How can I help you today?"),
        "r6": store.add_feedback("r6", rating=None, note="no opinion"),
    }
    store.add_feedback("r4", rating=None, note="a note does not change the verdict")
    return tmp_path / "feedback.db", fb


def source(fb: dict) -> dict:
    return {"response_id": fb["response_id"], "feedback_id": fb["id"], "reviewer": fb["reviewer"], "created": fb["created"]}


def test_export_writes_the_examples_and_pairs_of_every_rule(tmp_path, judged):
    db, fb = judged
    counts = from_feedback(db, tmp_path / "out.jsonl", tmp_path / "pairs.jsonl")
    assert counts == {"answers": 6, "examples": 4, "corrected": 2, "rated_good": 2, "pairs": 3, "skipped": 2, "invalid": 0}
    context = [*SUMS[:2], {**SUMS[2], "weight": 0}, SUMS[3]]  # the earlier answer: nobody judged it
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [
        {"messages": [*context, say("it is 4")], "tools": TOOLS, "source": source(fb["r1"])},
        {"messages": [*SIX, say("it is 6")], "tools": TOOLS, "source": source(fb["r3"])},
        {"messages": [*SIX, say("6")], "tools": TOOLS, "source": source(fb["r4"])},
        {"messages": [{"role": "user", "content": "hi"}, say("Hello! How can I help you today?")], "source": source(fb["r5"])},
    ]
    assert [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()] == [
        {"input": {"messages": SUMS, "tools": TOOLS}, "preferred_output": [say("it is 4")], "non_preferred_output": [say("it is 5")]},
        {"input": {"messages": SIX, "tools": TOOLS}, "preferred_output": [say("it is 6")], "non_preferred_output": [CALL]},
        {"input": {"messages": SIX, "tools": TOOLS}, "preferred_output": [say("6")], "non_preferred_output": [CALL]},
    ]


def test_exported_files_read_cleanly_and_train_only_the_judged_answer(tmp_path, judged):
    db, _ = judged
    from_feedback(db, tmp_path / "out.jsonl", tmp_path / "pairs.jsonl")
    examples = read_examples(tmp_path / "out.jsonl")
    assert examples.format == "chat" and examples.problems == [] and len(examples.examples) == 4
    pairs = read_examples(tmp_path / "pairs.jsonl")
    assert pairs.format == "preference" and pairs.problems == [] and len(pairs.examples) == 3
    tok = tiny_tokenizer("llama3")
    for ex in [*examples.examples, *pairs.examples]:
        tokens = tokenize_example(ex, tok)
        supervised = tok.decode([t for t, label in zip(tokens.input_ids, tokens.labels, strict=True) if label != -100])
        assert supervised.startswith(ex.messages[-1]["content"].strip()), supervised
        assert "5" not in supervised.replace(ex.messages[-1]["content"], "")


def test_the_latest_verdict_counts_and_identical_answers_make_no_pair(tmp_path):
    store = FeedbackStore(tmp_path / "f.db")
    record(store, "a", SIX, say("6"), created=1)
    record(store, "b", SIX, say("6"), created=2)
    store.add_feedback("a", rating="good")
    store.add_feedback("b", rating="bad", correction="6")
    store.add_feedback("b", rating="bad", correction="it is 6")
    store.add_feedback("b", rating="bad")  # the latest verdict: bad, and no correction any more
    counts = from_feedback(tmp_path / "f.db", tmp_path / "out.jsonl", tmp_path / "pairs.jsonl")
    assert (counts["examples"], counts["pairs"], counts["skipped"]) == (1, 0, 1)  # "6" over "6" teaches nothing
    assert (tmp_path / "pairs.jsonl").read_text() == ""


def test_an_unreadable_stored_conversation_is_counted_and_left_out(tmp_path):
    store = FeedbackStore(tmp_path / "f.db")
    record(store, "ok", SIX, say("6"))
    record(store, "bad", [{"role": "robot", "content": "beep"}], say("6"))
    store.add_feedback("ok", rating="good")
    store.add_feedback("bad", rating="good")
    assert from_feedback(tmp_path / "f.db", tmp_path / "out.jsonl")["invalid"] == 1
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "pairs.jsonl").exists()


def test_an_output_that_is_the_database_is_refused_and_nothing_is_written(tmp_path, judged):
    db, _ = judged
    before = db.read_bytes()
    with pytest.raises(DataError, match="--pairs-out .*feedback.db is the input file"):
        from_feedback(db, tmp_path / "out.jsonl", db)
    with pytest.raises(DataError, match="--out .*feedback.db-wal is the input file"):
        from_feedback(db, f"{db}-wal")
    assert db.read_bytes() == before and not (tmp_path / "out.jsonl").exists()


def test_a_missing_or_foreign_database_is_a_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="nope.db: no such file"):
        from_feedback(tmp_path / "nope.db", tmp_path / "out.jsonl")
    assert not (tmp_path / "nope.db").exists()  # reading never creates a database
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(DataError, match="other.db: not a feedback database .*no such table"):
        from_feedback(tmp_path / "other.db", tmp_path / "out.jsonl")
    store = FeedbackStore(tmp_path / "f.db")
    record(store, "r", SIX, say("7"))
    store.add_feedback("r", rating="bad")
    with pytest.raises(DataError, match=r"no judgement gives a training example \(1 answer\(s\) judged, 1 rated bad"):
        from_feedback(tmp_path / "f.db", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_prints_the_counts_and_refuses_in_one_line(tmp_path, judged, capsys):
    db, _ = judged
    code = cli.main(["data", "from-feedback", str(db), "--out", str(tmp_path / "o.jsonl"), "--pairs-out", str(tmp_path / "p.jsonl")])
    err = capsys.readouterr().err
    assert code == 0
    assert f"4 examples (2 corrected, 2 rated good) -> {tmp_path / 'o.jsonl'}; 3 preference pairs -> {tmp_path / 'p.jsonl'}" in err
    assert "6 answers judged; 2 skipped" in err
    assert cli.main(["data", "from-feedback", str(db), "--out", str(db)]) == 7
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --out {db} is the input file")


# ------------------------------------------------------------------------------ the preference reader


def test_preference_records_read_as_the_conversation_and_the_preferred_answer(tmp_path):
    pair = {"input": {"messages": SUMS, "tools": TOOLS, "parallel_tool_calls": True},
            "preferred_output": [say("it is 4")], "non_preferred_output": [say("it is 5")]}
    result = read_examples(write_jsonl(tmp_path / "pairs.jsonl", [pair]))
    assert result.format == "preference" and result.problems == []
    (ex,) = result.examples
    assert ex.messages == [*SUMS[:2], {**SUMS[2], "weight": 0}, SUMS[3], say("it is 4")]
    assert ex.tools == TOOLS and ex.line == 1


@pytest.mark.parametrize("record,code,index", [
    ({"input": [], "preferred_output": [say("a")]}, "wrong_type", None),
    ({"input": {"messages": SIX}, "preferred_output": []}, "missing_messages_list", None),
    ({"input": {"messages": "hi"}, "preferred_output": [say("a")]}, "missing_messages_list", None),
    ({"input": {"messages": SIX}, "preferred_output": [{"role": "user", "content": "a"}]}, "wrong_type", 1),
    ({"input": {"messages": SIX}, "preferred_output": [{"role": "assistant"}]}, "message_missing_key", 1),
    ({"input": {"messages": SIX, "tools": 5}, "preferred_output": [say("a")]}, "wrong_type", None),
])
def test_malformed_preference_records_are_line_numbered_problems(tmp_path, record, code, index):
    good = {"input": {"messages": SIX}, "preferred_output": [say("6")]}
    result = read_examples(write_jsonl(tmp_path / "p.jsonl", [good, record]), format="preference")
    assert [(p.code, p.line, p.message_index) for p in result.errors] == [(code, 2, index)]
    assert [e.line for e in result.examples] == [1]


# ------------------------------------------------------------------------------ training on it


def test_ojt_train_runs_on_an_exported_file(tmp_path, judged, capsys):
    from tests.train.helpers import make_model

    db, _ = judged
    from_feedback(db, tmp_path / "out.jsonl")
    model = make_model(tmp_path / "model", template="llama3")
    code = cli.main(["train", "--data", str(tmp_path / "out.jsonl"), "--model", str(model), "--output_dir",
                     str(tmp_path / "run"), "--max_steps", "2", "--precision", "fp32", "--data.max_seq_len", "256"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [1, 2]
