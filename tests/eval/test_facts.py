"""Facts found the way a reader finds them: each case is one a substring match got wrong or right."""

import pytest

from onthejob.eval.facts import (FactMatch, content_words, declines, fact_recall, match_fact, match_facts,
                                 normalize_words)

SICK = "The annual sick leave accrual for full-time employees is 10 days per calendar year"
FOUNDATION = ("No, employees cannot use Foundation resources for community or charitable activities "
              "without prior approval from the ED/CEO")
FOUNDATION_FACTS = ["Employees may not use Foundation resources for community or charitable activities",
                    "unless they have prior written approval from the ED/CEO"]


def found(answer, fact) -> str | None:
    """The piece of ``answer`` the fact was found in, None when it was not."""
    m = match_fact(answer, fact)
    return None if m.matched is None else answer[m.start:m.end]


def test_number_words_match_digits_in_the_sick_leave_answer():
    m = match_fact(SICK, "ten days")
    assert m == FactMatch("ten days", "ten days", 57, 64, "exact")
    assert SICK[m.start:m.end] == "10 days"


@pytest.mark.parametrize("answer, fact, piece", [
    ("Notice is two weeks.", "2 weeks", "two weeks"),
    ("Notice is 2 weeks.", "two weeks", "2 weeks"),
    ("Probation lasts three (3) months.", "3 months", "three (3) months"),
    ("Probation lasts 3 months.", "three (3) months", "3 months"),
    ("You get ten (10) days.", "10 days", "ten (10) days"),
    ("Cover is $2 million per claim.", "$2,000,000", "2 million"),
    ("Cover is $2,000,000 per claim.", "2M", "2,000,000"),
    ("Cover is 2M per claim.", "$2 million", "2M"),
    ("Cover is 2000000 dollars.", "$2 million", "2000000"),
    ("Up to 1.5 million.", "1,500,000", "1.5 million"),
    ("Pay rises by 5k.", "5,000", "5k"),
    ("It costs 10.0 units.", "ten units", "10.0 units"),
    ("Twenty-five days a year.", "25 days", "Twenty-five days"),
    ("one hundred and five days", "105 days", "one hundred and five days"),
    ("Paid on the twenty-first.", "21st", "twenty-first"),
    ("the third Monday", "3rd Monday", "third Monday"),
    ("The ﬁnal review", "final review", "ﬁnal review"),  # the "fi" ligature is one character
    ("Allowance: １０ days", "10 days", "１０ days"),  # full-width digits
    ("A full–time role", "full-time", "full–time"),  # en dash
    ("A full time role", "full-time", "full time"),
    ("Ask the ED / CEO.", "ED/CEO", "ED / CEO"),
    ("Ask the ed/ceo.", "the ED/CEO", "ed/ceo"),
    ("Managers, NOT staff, approve it!", "not staff approve", "NOT staff, approve"),
    ("It’s the employee’s choice.", "employee's choice", "employee’s choice"),  # curly apostrophe
    ("Staff can't carry leave over.", "cannot carry leave", "can't carry leave"),
    ("Rates rose 10%.", "10 percent", "10%"),
])
def test_written_differently_still_matches(answer, fact, piece):
    assert found(answer, fact) == piece


@pytest.mark.parametrize("answer, fact", [
    ("You get 100 days.", "10 days"),
    ("You get 1 day.", "10 days"),
    ("You get 10 days.", "100 days"),
    ("Probation is 13 months.", "3 months"),
    ("Probation is 3 months.", "13 months"),
    ("Paid on the 21st.", "21 days"),  # an ordinal is not a count
    ("Cover is $2 million.", "$2,000"),
    ("One two three.", "123"),  # separate number words stay separate numbers
    ("Employees get paid leave.", "unpaid leave"),
])
def test_different_numbers_and_words_do_not_match(answer, fact):
    assert found(answer, fact) is None


def test_the_foundation_answer_matches_its_handbook_phrases_by_words():
    first, second = match_facts(FOUNDATION, FOUNDATION_FACTS)
    assert first.how == "words" and second.how == "words"
    assert FOUNDATION[first.start:first.end] == ("employees cannot use Foundation resources for community or "
                                                 "charitable activities")
    assert FOUNDATION[second.start:second.end] == "prior approval from the ED/CEO"  # 4 of 5 content words
    assert fact_recall(FOUNDATION, FOUNDATION_FACTS) == 1.0


def test_an_answer_saying_the_opposite_does_not_match():
    # 6 of the 7 content words are there, but the fact forbids what the answer allows.
    yes = "Yes, employees can use Foundation resources for charitable activities"
    assert match_fact(yes, FOUNDATION_FACTS[0]).matched is None
    # and the other way round: a positive fact is not found in an answer that negates it
    allowed = "Employees may use Foundation resources for community or charitable activities"
    assert match_fact(FOUNDATION, allowed).matched is None
    assert fact_recall(yes, FOUNDATION_FACTS) == 0.0


def test_a_long_fact_needs_three_quarters_of_its_content_words():
    fact = "Employees must submit written requests to their supervisor"  # employees submit written requests supervisor
    assert match_fact("Employees submit written requests to the supervisor.", fact).how == "words"  # 5 of 5
    assert match_fact("Employees submit requests to a supervisor.", fact).how == "words"  # 4 of 5 = 80%
    assert match_fact("Employees submit requests.", fact).matched is None  # 3 of 5 = 60%
    assert match_fact("Employees submit requests.", "employees submit written requests").how == "words"  # 3 of 4
    # short facts (under four content words) are never matched loosely
    assert match_fact("Submit requests.", "submit written requests").matched is None


def test_words_must_stand_together_not_be_scattered_over_the_answer():
    fact = "Employees submit written requests to their supervisor"
    filler = "Nothing else here matters at all today. " * 6
    far = "Employees are welcome. " + filler + "Submit written requests to supervisor."
    near = "Submit written requests to supervisor."
    assert match_fact(far, fact).how == "words"  # "submit written requests supervisor": 4 of 5, together
    assert found(far, fact) == "Submit written requests to supervisor"
    assert match_fact(near.replace("written ", ""), fact).matched is None  # 3 of 5
    scattered = "Employees " + "x " * 40 + "submit " + "x " * 40 + "requests " + "x " * 40 + "supervisor"
    assert match_fact(scattered, fact).matched is None


def test_words_match_across_endings():
    fact = "Employees need prior approval for overtime hours"
    assert match_fact("Each employee needs approval, prior to any overtime hour.", fact).how == "words"


def test_alternatives_match_if_any_does_and_say_which():
    m = match_fact(SICK, ["two weeks", "10 days"])
    assert m.fact == "two weeks" and m.matched == "10 days" and SICK[m.start:m.end] == "10 days"
    assert match_fact(SICK, ["two weeks", "5 days"]) == FactMatch("two weeks", None, None, None, "")
    # an exact alternative wins over an earlier one that only matches by words
    m = match_fact(FOUNDATION, [FOUNDATION_FACTS[0], "ED/CEO"])
    assert m.matched == "ED/CEO" and m.how == "exact"
    assert fact_recall(SICK, [["ten days", "2 weeks"], "sick leave", "five days"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        match_fact(SICK, [])
    with pytest.raises(ValueError):
        fact_recall(SICK, [])


def test_a_fact_with_nothing_left_after_normalising_never_matches():
    assert match_fact("Yes!!", "!!").matched is None


def test_normalize_words_keeps_spans_into_the_original_text():
    text = "Ten (10) days for full‑time staff: $2,000,000."
    words = normalize_words(text)
    assert [w for w, _, _ in words] == ["10", "days", "for", "full", "time", "staff", "2000000"]
    assert [text[s:e] for _, s, e in words] == ["Ten (10)", "days", "for", "full", "time", "staff", "2,000,000"]
    assert [w for w, _, _ in normalize_words("The ED's plan A.")] == ["ed", "plan", "a"]  # "A." ends a sentence


def test_content_words_leave_out_stopwords_and_negations():
    assert content_words("Employees may not use the two cars") == ["employees", "use", "2", "cars"]


@pytest.mark.parametrize("text", [
    "The documents I have do not cover this.",
    "I don't know.",
    "I do not know the answer to that.",
    "I'm sorry, I can't help with that.",
    "The handbook does not say.",
    "Unfortunately, the provided context doesn’t mention parking.",
    "I cannot provide legal advice on this matter.",
    "Sorry. I am unable to answer that from the handbook.",
    "There is no information about parking in the policy.",
    "This is not covered in the handbook.",
    "I don't have enough information to answer.",
])
def test_declines(text):
    assert declines(text)


@pytest.mark.parametrize("text", [
    "You do not need approval.",
    "No, employees cannot use Foundation resources without approval.",
    "Employees cannot share confidential data.",
    "10 days. The handbook does not say whether unused days carry over.",
    "Full-time employees accrue ten days of sick leave per year.",
    "",
])
def test_does_not_decline(text):
    assert not declines(text)
