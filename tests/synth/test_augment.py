"""Paraphrase augmentation with a scripted teacher: what is kept, what is dropped and why, answers
that keep their facts, the reply cache, and bad input."""

import json

import pytest

from onthejob.data.schema import Example
from onthejob.errors import DataError
from onthejob.synth import augment
from onthejob.synth.augment import Stats, answer_prompt, paraphrase_examples, question_prompt
from onthejob.synth.config import AugmentConfig, TeacherConfig
from onthejob.synth.teacher import Cache

SYSTEM = {"role": "system", "content": "You are the HR assistant."}
Q1, A1 = "How many weeks of notice apply during probation?", "During probation the notice period is 3 weeks."
Q2, A2 = "Who is the HR contact in Dundee?", "Your HR contact in Dundee is Tamsin Adeyemi."


class ScriptedTeacher:
    """Replies by exact prompt ("" for any prompt not in the script); counts what it is asked."""

    identity = "scripted"

    def __init__(self, script: dict[str, str] | None = None, default=None):
        self.script = script or {}
        self.default = default
        self.asked: list[list[dict]] = []

    def complete(self, prompts, done):
        for i, p in enumerate(prompts):
            self.asked.append(p)
            reply = self.script.get(json.dumps(p, sort_keys=True))
            done(i, reply if reply is not None else (self.default(p) if self.default else ""))


def key(prompt):
    return json.dumps(prompt, sort_keys=True)


def example(q, a, line):
    return Example([SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}], source="train.jsonl", line=line)


def tagged(prompt):
    """A good rewording, distinct per prompt: the question with the style asked for appended."""
    text = prompt[-1]["content"]
    if text.startswith("Question:"):  # an answer prompt: leave the answer as it was
        return ""
    question = text.split("Question: ", 1)[1]
    how = text.split("Reword this question ", 1)[1].split(".", 1)[0]
    return f'Paraphrase: "{question[:-1]} ({how})?"'


def paraphrase(examples, teacher, tmp_path, **kw):
    stats = Stats()
    records = paraphrase_examples(examples, paraphrases=kw.pop("paraphrases", 3), answers=kw.pop("answers", False),
                                  teacher=teacher, teacher_config=TeacherConfig(), cache=Cache(tmp_path / "c.sqlite3"),
                                  stats=stats, **kw)
    return records, stats


def test_each_original_is_followed_by_n_paraphrases_pointing_to_it(tmp_path):
    examples = [example(Q1, A1, 1), example(Q2, A2, 2)]
    records, stats = paraphrase(examples, ScriptedTeacher(default=tagged), tmp_path, paraphrases=3)
    assert [r.get("paraphrase_of") for r in records] == [None, "train.jsonl:1", "train.jsonl:1", "train.jsonl:1",
                                                         None, "train.jsonl:2", "train.jsonl:2", "train.jsonl:2"]
    assert records[0] == examples[0].to_record() and records[4] == examples[1].to_record()
    first = records[1:4]
    assert [r["paraphrase"] for r in first] == [1, 2, 3]
    for r, k in zip(first, range(3)):
        how = augment.style(k)[0]
        # the label and quotes are cleaned off; system prompt and answer are the original's
        assert r["messages"] == [SYSTEM, {"role": "user", "content": f"{Q1[:-1]} ({how})?"}, {"role": "assistant", "content": A1}]
    assert sum(stats.dropped.values()) == 0


def test_duplicates_and_rewordings_that_lose_a_fact_are_dropped_and_counted(tmp_path):
    q = "Is notice 3 weeks for staff in probation at Corvane?"
    replies = [
        "Is notice 3 weeks for staff in probation at Corvane?",  # the original
        "For staff in probation at Corvane, is notice 3 weeks?",  # kept
        "for staff in probation at corvane is notice 3 weeks",  # the one before, less punctuation
        "Is notice three months for staff in probation at Corvane?",  # 3 weeks gone
        "Notice is 3 weeks for staff in probation at Corvane.",  # an answer, not a question
        "Can I claim a taxi home after 9 pm from the Leeds office?",  # the worked example
        "Is notice 3 weeks for staff in probation at Corvane? " * 4,  # rambling
        "Sure! Here is a reworded question:\n\n",  # nothing after the preamble
        "At Corvane, is notice 3 weeks after 9 pm in probation?",  # the example's "9 pm" carried over
        "At Corvane, is notice 3 weeks for the 2 years of probation?",  # a number the question lacks
    ]
    script = {key(question_prompt(q, k)): r for k, r in enumerate(replies)}
    records, stats = paraphrase([example(q, A1, 1)], ScriptedTeacher(script), tmp_path, paraphrases=len(replies))
    assert [r["messages"][1]["content"] for r in records] == [q, replies[1]]
    assert records[1]["paraphrase"] == 2
    assert stats.dropped == {"same as original": 1, "duplicate": 1, "lost a fact": 1, "not a question": 1,
                             "copied the example": 2, "too long": 1, "empty": 1, "added a fact": 1}


def test_a_name_and_a_number_must_survive_the_rewording(tmp_path):
    q = "Been sick 3 days, do I need a GP note?"
    script = {key(question_prompt(q, 0)): "After three days off sick, do I need a note from a GP?",  # 3 = three
              key(question_prompt(q, 1)): "After 3 days off sick, do I need a doctor's note?",  # GP gone
              key(question_prompt(q, 2)): "After 5 days off sick, do I need a GP note?"}  # 3 days gone
    records, stats = paraphrase([example(q, "Yes, after 3 days.", 1)], ScriptedTeacher(script), tmp_path, paraphrases=3)
    assert [r["paraphrase"] for r in records[1:]] == [1]
    assert stats.dropped == {"lost a fact": 2}


def test_reworded_answers_keep_every_fact_or_the_original_answer_is_kept(tmp_path):
    script = {
        key(question_prompt(Q2, 0)): "Which HR contact looks after Dundee?",
        key(question_prompt(Q2, 1)): "In Dundee, who do I ask about HR?",
        key(question_prompt(Q2, 2)): "Who handles HR for the Dundee office?",
        key(answer_prompt(Q2, A2, 0)): "Answer: Tamsin Adeyemi is your HR contact in Dundee.",  # facts kept
        key(answer_prompt(Q2, A2, 1)): "Your HR contact is Tamsin.",  # "Adeyemi" and "Dundee" lost
        key(answer_prompt(Q2, A2, 2)): "Tamsin Adeyemi is your HR contact in Dundee, on extension",  # cut off
    }
    records, stats = paraphrase([example(Q2, A2, 7)], ScriptedTeacher(script), tmp_path, paraphrases=3, answers=True,
                                keys={"train.jsonl:7": {"facts": ["Tamsin Adeyemi"]}})
    answers = [r["messages"][-1]["content"] for r in records]
    assert answers == [A2, "Tamsin Adeyemi is your HR contact in Dundee.", A2, A2]
    assert all(r["facts"] == ["Tamsin Adeyemi"] for r in records)  # the record's other keys travel with it
    assert stats.answers_reworded == 1 and stats.answer_kept == {"lost a fact": 1, "cut off": 1}


def test_a_record_fact_the_rewording_drops_keeps_the_original_answer(tmp_path):
    a = "Overtime is given back as time off in lieu within sixty days."
    script = {key(question_prompt(Q1, 0)): "During probation, how many weeks of notice apply?",
              key(answer_prompt(Q1, a, 0)): "Overtime comes back as leave within sixty days."}
    records, stats = paraphrase([example(Q1, a, 1)], ScriptedTeacher(script), tmp_path, paraphrases=1, answers=True,
                                keys={"train.jsonl:1": {"facts": ["time off in lieu"]}})
    assert records[1]["messages"][-1]["content"] == a and stats.answer_kept == {"lost a fact": 1}


def write_chat(path, pairs, **extra):
    path.write_text("".join(json.dumps({"messages": [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                        **extra}) + "\n" for q, a in pairs))
    return path


def test_run_writes_the_file_and_a_rerun_asks_the_teacher_nothing(tmp_path, monkeypatch):
    data = write_chat(tmp_path / "train.jsonl", [(Q1, A1), (Q2, A2)], facts=["x"])
    config = AugmentConfig(file=str(data), out=str(tmp_path / "aug.jsonl"), paraphrases=2, cache=str(tmp_path / "c.sqlite3"))
    first = ScriptedTeacher(default=tagged)
    monkeypatch.setattr(augment, "open_teacher", lambda _: first)
    report = augment.run(config)
    written = (tmp_path / "aug.jsonl").read_text()
    records = [json.loads(line) for line in written.splitlines()]
    assert len(first.asked) == 4 and len(records) == 6
    assert [r.get("paraphrase_of") for r in records] == [None, f"{data}:1", f"{data}:1", None, f"{data}:2", f"{data}:2"]
    assert all(r["facts"] == ["x"] for r in records)
    assert report.startswith(f"wrote 2 originals + 4 paraphrases to {tmp_path / 'aug.jsonl'} (0 dropped)")

    again = ScriptedTeacher()  # would reply "" to everything: the cache must answer instead
    monkeypatch.setattr(augment, "open_teacher", lambda _: again)
    (tmp_path / "aug.jsonl").unlink()
    report = augment.run(config)
    assert again.asked == [] and (tmp_path / "aug.jsonl").read_text() == written
    assert "4 prompts (4 from the cache)" in report


def test_bad_input_is_one_clear_error(tmp_path):
    def run(file, out=None):
        augment.run(AugmentConfig(file=str(file), out=str(out or tmp_path / "aug.jsonl"), cache=str(tmp_path / "c.sqlite3")))

    with pytest.raises(DataError, match="missing.jsonl"):
        run(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n{"messages": oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl has 1 error\(s\), nothing written: .*bad.jsonl:2"):
        run(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("[]")
    with pytest.raises(DataError, match="empty.jsonl: no examples found"):
        run(empty)
    data = write_chat(tmp_path / "train.jsonl", [(Q1, A1)])
    with pytest.raises(DataError, match="is the input file"):
        run(data, out=data)
    assert not (tmp_path / "aug.jsonl").exists()
