from onthejob.synth.prompts import check, parse, prompt

PASSAGE = "Staff receive 25 days of annual leave per calendar year. Leave not taken by 31 March is lost."
FOCUS = "Staff receive 25 days of annual leave per calendar year."


def test_parse_reads_the_first_pair_with_markdown():
    assert parse("**Question:** How long?\n**Answer:** 25 days.\nQuestion: more?\nAnswer: no") == ("How long?", "25 days.")
    assert parse("I cannot help with that.") is None


def _check(reply, fallback=False):
    return check(reply, focus=FOCUS, passage=PASSAGE, examples=[], fallback=fallback)


def test_a_grounded_answer_is_kept_with_its_facts():
    pair = _check("Question: How much annual leave do staff get?\nAnswer: You get 25 days of annual leave per calendar year.")
    assert pair.reason is None and pair.facts == ["25 days"]


def test_each_check_names_its_reason():
    assert _check("no form here").reason == "unreadable"
    assert _check("Question: What does the text say?\nAnswer: 25 days.").reason == "bad question"
    assert _check("Question: What is the dress code for the summer party?\nAnswer: 25 days.").reason == "off the text"
    assert _check("Question: How much annual leave do staff get after 40 years?\nAnswer: 25 days.").reason == "off the text"
    assert _check("Question: How much annual leave do staff get?\nAnswer: Staff get 18 working days.").reason == "invented facts"
    assert _check("Question: How much annual leave do staff get?\nAnswer: Staff get 30 of them.").reason == "invented facts"
    assert _check("Question: How much annual leave do staff get?\nAnswer: It depends on your manager.").reason == "no facts"
    assert _check("Question: How much annual leave do staff get?\nAnswer: How much annual leave do staff get?").reason in ("copied", "no facts")


def test_the_prompt_shows_the_users_examples_and_style():
    messages = prompt(FOCUS, "Leave", "formal, brief", [("How long is probation?", "Probation lasts six months.")])
    assert messages[1]["content"].count("Probation lasts six months.") == 1
    assert messages[2]["content"] == "Question: How long is probation?\nAnswer: Probation lasts six months."
    assert "Topic: Leave" in messages[-1]["content"] and "formal, brief" in messages[-1]["content"]


def test_a_fair_question_with_a_wrong_answer_is_answered_by_the_document():
    pair = _check("Question: How much annual leave do staff get?\nAnswer: Staff get 18 working days.", fallback=True)
    assert pair.reason is None and pair.answer_from == "document"
    assert pair.answer == FOCUS and pair.facts == ["25 days"]
    kept = _check("Question: How much annual leave do staff get?\nAnswer: You get 25 days of annual leave.", fallback=True)
    assert kept.answer_from == "teacher"
