import json

import pytest

from onthejob.cli import main
from onthejob.errors import DataError, ModelError, RagError
from onthejob.synth import run as synth_run
from onthejob.synth.config import SynthConfig

from tests.synth.helpers import HANDBOOK, Endpoint, FakeTeacher


@pytest.fixture
def docs(tmp_path):
    doc = tmp_path / "handbook.md"
    doc.write_text(HANDBOOK, encoding="utf-8")
    return doc


def _config(tmp_path, docs, **kw):
    return SynthConfig(paths=[str(docs)], out=str(tmp_path / "train.jsonl"), eval_out=str(tmp_path / "eval.jsonl"),
                       cache=str(tmp_path / "cache.sqlite3"), eval_split=0.25, per_passage=2, **kw)


def _use(monkeypatch, teacher):
    monkeypatch.setattr(synth_run, "open_teacher", lambda config: teacher)
    return teacher


def _lines(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_synth_writes_sourced_examples_and_an_eval_set_from_other_passages(tmp_path, docs, monkeypatch):
    _use(monkeypatch, FakeTeacher())
    config = _config(tmp_path, docs, system="You are the HR assistant.")
    text = synth_run.run(config)
    train, held = _lines(config.out), _lines(config.eval_out)
    assert len(train) + len(held) == 7 and held, text
    for r in train + held:
        assert r["messages"][0] == {"role": "system", "content": "You are the HR assistant."}
        src = r["source"]
        assert src["file"] == str(docs.resolve()) and src["section"] in ("Leave", "Probation", "Expenses", "Conduct")
        assert src["focus"] in HANDBOOK and r["facts"]
    assert {r["source"]["section"] for r in train}.isdisjoint({r["source"]["section"] for r in held})
    assert main(["data", "check", config.out, "--no-stats"]) == 0
    assert main(["data", "check", config.eval_out, "--no-stats"]) == 0
    assert main(["data", "leakage", config.out, config.eval_out]) == 0


def test_a_rerun_asks_the_teacher_nothing(tmp_path, docs, monkeypatch):
    first = _use(monkeypatch, FakeTeacher())
    config = _config(tmp_path, docs)
    synth_run.run(config)
    before = open(config.out, encoding="utf-8").read()
    again = _use(monkeypatch, FakeTeacher())
    assert "7 from the cache" in synth_run.run(config)
    assert first.calls == 7 and again.calls == 0
    assert open(config.out, encoding="utf-8").read() == before


def test_a_killed_run_resumes_and_writes_what_an_uninterrupted_one_does(tmp_path, docs, monkeypatch):
    whole = _config(tmp_path / "a", docs)
    (tmp_path / "a").mkdir()
    _use(monkeypatch, FakeTeacher())
    synth_run.run(whole)

    (tmp_path / "b").mkdir()
    config = _config(tmp_path / "b", docs)
    _use(monkeypatch, FakeTeacher(fail_after=3))
    with pytest.raises(KeyboardInterrupt):
        synth_run.run(config)
    assert not (tmp_path / "b" / "train.jsonl").exists()  # nothing half-written
    rest = _use(monkeypatch, FakeTeacher())
    synth_run.run(config)
    assert rest.calls == 4
    assert open(config.out, encoding="utf-8").read() == open(whole.out, encoding="utf-8").read()
    assert open(config.eval_out, encoding="utf-8").read() == open(whole.eval_out, encoding="utf-8").read()


def test_a_teacher_that_asks_off_the_text_gets_a_clear_error_and_no_file(tmp_path, docs, monkeypatch):
    _use(monkeypatch, FakeTeacher(lambda m: "Question: How many hours may a pilot fly per week?\nAnswer: 18 hours."))
    config = _config(tmp_path, docs)
    with pytest.raises(DataError, match="no usable example.*off the text"):
        synth_run.run(config)
    assert not (tmp_path / "train.jsonl").exists() and not (tmp_path / "eval.jsonl").exists()


def test_the_openai_compatible_endpoint_path_and_its_retries(tmp_path, docs):
    server = Endpoint("flaky")
    try:
        config = _config(tmp_path, docs, teacher={"url": server.url, "concurrency": 3, "retries": 3})
        text = synth_run.run(config)
    finally:
        server.close()
    assert "asked (0 from the cache)" in text
    assert len(_lines(config.out)) + len(_lines(config.eval_out)) == 7
    assert server.requests == 9  # 7 questions, 2 of them retried after a 500


@pytest.mark.parametrize(("mode", "message"), [("html", "not JSON"), ("empty", "no usable example.*off the text")])
def test_a_broken_endpoint_gets_one_clear_line(tmp_path, docs, mode, message, capsys):
    server = Endpoint(mode)
    try:
        code = main(["data", "synth", str(docs), "--out", str(tmp_path / "t.jsonl"), "--teacher-url", server.url,
                     "--cache", str(tmp_path / "c.sqlite3")])
    finally:
        server.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (DataError.exit_code, ModelError.exit_code)
    assert err[-1].startswith("error: ") and __import__("re").search(message, err[-1])
    assert not (tmp_path / "t.jsonl").exists()


def test_an_endpoint_that_is_down(tmp_path, docs, capsys):
    server = Endpoint("ok")
    url = server.url
    server.close()
    code = main(["data", "synth", str(docs), "--out", str(tmp_path / "t.jsonl"), "--teacher-url", url,
                 "--teacher-model", "m", "--teacher.retries", "1", "--cache", str(tmp_path / "c.sqlite3")])
    err = capsys.readouterr().err
    assert code == ModelError.exit_code and "failed 2 times" in err and "ojt serve" in err


def test_unreadable_and_empty_documents(tmp_path, monkeypatch, capsys):
    _use(monkeypatch, FakeTeacher())
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(RagError, match="broken.pdf"):
        synth_run.run(SynthConfig(paths=[str(bad)], out=str(tmp_path / "t.jsonl"), cache=str(tmp_path / "c")))
    empty = tmp_path / "empty.md"
    empty.write_text("# Heading\n\n   \n", encoding="utf-8")
    with pytest.raises(DataError, match="no passage holds a sentence"):
        synth_run.run(SynthConfig(paths=[str(empty)], out=str(tmp_path / "t.jsonl"), cache=str(tmp_path / "c")))
    assert not (tmp_path / "t.jsonl").exists()


def test_example_flag_must_have_an_arrow(tmp_path, docs, capsys):
    assert main(["data", "synth", str(docs), "--out", str(tmp_path / "t.jsonl"), "--example", "no arrow"]) == 3
    assert "QUESTION => ANSWER" in capsys.readouterr().err


def test_a_prompt_that_occurs_twice_is_asked_once(tmp_path):
    from onthejob.synth.config import TeacherConfig
    from onthejob.synth.teacher import Cache, ask

    prompts = [[{"role": "user", "content": f"Text: {s}\n"}] for s in ("Leave is 25 days.", "Probation is 6 months.", "Leave is 25 days.")]
    teacher, cache, seen = FakeTeacher(), Cache(tmp_path / "c.sqlite3"), []
    replies, cached = ask(teacher, TeacherConfig(), prompts, cache=cache, progress=seen.append)
    assert teacher.calls == 2 and cached == 0 and sum(seen) == 3
    assert replies[0] == replies[2] != replies[1]
    again = FakeTeacher()
    assert ask(again, TeacherConfig(), prompts, cache=cache) == (replies, 3) and again.calls == 0
    cache.close()
