"""data.rag: every training question is trained with the passages its collection retrieves, in the
RAG prompt's layout; the answer cites the passage holding its facts, which is always among them;
distractors, 'not covered' copies and rows too short for every passage behave as documented; a
run saves what it trained on in RUN/rag.jsonl and reads it back on resume."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from onthejob.data.schema import Example
from onthejob.errors import ConfigError
from onthejob.rag.answer import NOT_COVERED
from onthejob.rag.index import index
from onthejob.rag.stores import open_store
from onthejob.train import config as cfg
from onthejob.train.config import RagTrainSection
from onthejob.train.loop import run
from onthejob.train.rag import FILE, RunRag, holds
from tests.rag.helpers import FakeEmbedder
from tests.train.helpers import make_config

POLICIES = {
    "leave.md": "# Annual leave\n\nConfirmed staff are entitled to 18 days of paid annual leave per calendar year.\n",
    "sick.md": "# Sick leave\n\nStaff may take up to 14 days of paid outpatient sick leave a year with a medical certificate.\n",
    "travel.md": "# Travel\n\nStaff flying overseas on official business fly economy class for flights under six hours.\n",
    "probation.md": "# Probation\n\nNew staff serve a probation of 3 months before they are confirmed in their post.\n",
    "parking.md": "# Parking\n\nThe car park opens at 7 am and every employee may register one car with reception.\n",
}
QA = [
    ("How many days of annual leave do confirmed staff get?", "Confirmed staff get 18 days of paid annual leave a year.", "leave.md"),
    ("How much outpatient sick leave can staff take?", "Up to 14 days of paid outpatient sick leave a year.", "sick.md"),
    ("How long is probation for new staff?", "Probation lasts 3 months.", "probation.md"),
]


@pytest.fixture
def collection(tmp_path, monkeypatch):
    """Five one-policy documents indexed with the fake embedder in the test's own ONTHEJOB_HOME;
    every retriever opened on it gets the fake embedder too."""
    monkeypatch.setenv("ONTHEJOB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("onthejob.rag.answer.cached_embedder", lambda name: FakeEmbedder())
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in POLICIES.items():
        (docs / name).write_text(text)
    with open_store() as store:
        index([docs], "policies", store=store, embedder=FakeEmbedder(), progress=False)
    return docs


def examples() -> list[Example]:
    return [Example([{"role": "system", "content": "You are the HR assistant."}, {"role": "user", "content": q},
                     {"role": "assistant", "content": a}], source="train.jsonl", line=i)
            for i, (q, a, _) in enumerate(QA, 1)]


def passages(record: dict) -> list[tuple[int, str]]:
    """(n, text) of each passage in a wrapped user turn, in order."""
    prompt = record["messages"][-2]["content"]
    return [(int(n), text.strip()) for n, text in re.findall(r"\[(\d+)\] [^\n]*\n(.*?)(?=\n\n\[\d+\] |\n\nQuestion: )", prompt, re.S)]


def make(settings: dict, fits=lambda messages: True, seed=0) -> tuple[list[Example], RunRag]:
    rag = RunRag(RagTrainSection(collection="policies", **settings), seed=seed, say=lambda line: None)
    return rag(examples(), fits), rag


def test_each_question_is_trained_with_its_passages_and_cites_the_one_that_answers(collection):
    out, rag = make({"k": 2, "distractors": 1})
    assert out[:3] == examples()  # closed_book: the originals stay
    assert len(rag.records) == 3 and [e.source for e in out[3:]] == [FILE] * 3
    for record, (question, answer, doc) in zip(rag.records, QA):
        assert record["rag_of"].startswith("train.jsonl:")
        user = record["messages"][-2]["content"]
        assert user.startswith("Answer the question using only the numbered passages") and user.endswith(f"Question: {question}")
        assert record["messages"][0]["content"] == "You are the HR assistant."  # the system prompt is kept
        found = passages(record)
        assert [n for n, _ in found] == [1, 2, 3]  # k 2 and one distractor
        cite = int(re.fullmatch(r".* \[(\d+)\]", record["messages"][-1]["content"])[1])
        assert record["messages"][-1]["content"] == f"{answer} [{cite}]"
        assert POLICIES[doc].split("\n\n")[1].strip() in dict(found)[cite]  # the cited passage is the policy


def test_the_passage_holding_the_answer_is_moved_in_when_retrieval_ranks_it_below_k(collection):
    # k 1 with a question worded like the parking policy: the leave policy is not the first hit
    question, answer = "Can staff register a car with reception, and does it change annual leave?", "No: 18 days of annual leave."
    rag = RunRag(RagTrainSection(collection="policies", k=1, distractors=0), seed=0, say=lambda line: None)
    rag([Example([{"role": "user", "content": question}, {"role": "assistant", "content": answer}], line=1)], lambda m: True)
    [(n, text)] = passages(rag.records[0])
    assert "18 days" in text and rag.records[0]["messages"][-1]["content"] == f"{answer} [1]"


def test_not_covered_copies_hold_no_passage_with_the_answer(collection):
    out, rag = make({"k": 2, "distractors": 1, "not_covered": 1.0, "closed_book": False})
    assert len(out) == 6  # no originals; each question with its passages and once without the answer
    refusals = [r for r in rag.records if r["messages"][-1]["content"] == NOT_COVERED]
    assert len(refusals) == 3
    for record, (_, answer, _) in zip(refusals, QA):
        assert len(passages(record)) == 2 and not any(holds(text, answer) for _, text in passages(record))


def test_passages_that_do_not_fit_a_row_are_left_out_but_never_the_one_that_answers(collection):
    def fits(messages):
        return messages[-2]["content"].count("\n\n[") < 2  # room for one passage only

    _, rag = make({"k": 3, "distractors": 1}, fits)
    for record, (_, answer, _) in zip(rag.records, QA):
        [(n, text)] = passages(record)
        assert holds(text, answer) and record["messages"][-1]["content"].endswith("[1]")


def test_a_run_trains_on_the_passages_saves_them_and_reads_them_back_on_resume(collection, tmp_path, capsys):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
                            for q, a, _ in QA))
    raw = make_config(tmp_path, **{"data.train": [{"path": str(data)}], "data.rag": {"collection": "policies", "k": 2}})
    del raw["data"]["max_seq_len"]  # the rule for data.rag chooses it
    run_dir = run(cfg.validate(raw))
    err = capsys.readouterr().err
    saved = [json.loads(line) for line in (run_dir / FILE).read_text().splitlines()]
    assert len(saved) == 3 and all(r["rag_of"].startswith(str(data)) for r in saved)
    assert re.search(r"examples\s+6 for training", err) and "data.rag: 3 examples with passages from 'policies'" in err
    assert "data.max_seq_len 2048" in err
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["max_seq_len"] == 2048
    # resuming trains on the saved records: no collection is opened for them
    again = RunRag(cfg.validate(raw).data.rag, seed=0, run_dir=run_dir, say=lambda line: None)
    with open_store() as store:
        store.delete("policies")
    from onthejob.data.readers import read_examples

    out = again(read_examples(str(data)).examples, lambda m: True)
    assert [e.messages for e in out[3:]] == [r["messages"] for r in saved]


def test_bad_settings_name_their_key():
    base = {"model": "m", "data": {"train": [{"path": "x.jsonl"}]}}
    for rag, key in (({"k": 2}, "data.rag.collection"), ({"collection": " "}, "data.rag.collection"),
                     ({"collection": "c", "k": 0}, "data.rag.k"), ({"collection": "c", "not_covered": 2}, "data.rag.not_covered"),
                     ({"collection": "c", "template": "no slots"}, "data.rag.template")):
        with pytest.raises(ConfigError, match=re.escape(key)):
            cfg.validate({**base, "data": {**base["data"], "rag": rag}})


def test_of_two_passages_holding_the_facts_the_one_about_the_question_is_gold():
    from onthejob.rag.store import Chunk, Hit
    from onthejob.train.rag import gold_passage

    notice = Hit(Chunk("a#0", "a.pdf", "Notice period: Grade N1 to N3 48 hours; Grade N11 and above 3 months."), 1.0, 0.9, None, 1)
    probation = Hit(Chunk("a#1", "a.pdf", "The probation period for Grade N1 to N3 is 3 months, and 6 months above."), 0.9, 0.8, None, 2)
    answer = "The probation period for Grade N1 to N3 staff is 3 months."
    assert gold_passage([notice, probation], "How long is probation for grade N1 to N3?", answer) is probation
    assert gold_passage([notice], "How long is probation?", answer) is notice
    assert gold_passage([Hit(Chunk("b#0", "b.pdf", "Parking opens at 7 am."), 1.0, 0.9, None, 1)], "probation?", answer) is None
