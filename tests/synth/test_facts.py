from onthejob.synth.facts import key_facts, shared_run


def test_key_facts_are_numbers_with_units_times_money_codes_and_dates():
    text = "Grade N1 to N3 staff serve 3 months from 8.30 am; claims over $500 or 5% need approval (see 3.4) since 3 September 2012."
    assert key_facts(text) == ["N1", "N3", "3 months", "8.30 am", "$500", "5%", "3 September 2012"]


def test_clause_numbers_and_plain_words_are_not_facts():
    assert key_facts("See clause 3.4 and the notes in paragraph 2.1.5 about conduct.") == []


def test_spelled_numbers_count():
    assert key_facts("You get ten (10) working days.") == ["ten (10) working days"]


def test_shared_run_needs_four_content_words():
    sentence = "Either party may pay a sum of money equal to the salary for the period not served."
    assert shared_run("You pay a sum of money equal to the salary.", sentence) == "pay a sum of money equal to the salary"
    assert shared_run("Either party may leave.", sentence) is None
