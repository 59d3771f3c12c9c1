from onthejob.synth.sections import Passage, focus_sentences, read_passages

from tests.synth.helpers import HANDBOOK


def test_passages_keep_their_source_span_and_ligatures_are_normalised(tmp_path):
    doc = tmp_path / "handbook.md"
    doc.write_text(HANDBOOK.replace("confidential", "conﬁdential"), encoding="utf-8")
    passages = read_passages([doc])
    assert [p.heading for p in passages] == ["Leave", "Probation", "Expenses", "Conduct"]
    conduct = passages[-1]
    assert "confidential" in conduct.text and "ﬁ" not in conduct.text
    src = conduct.source()
    assert src["file"] == str(doc.resolve()) and src["section"] == "Conduct"
    assert src["span"][1] - src["span"][0] == len(conduct.text)


def test_focus_sentences_prefer_facts_and_drop_clause_numbers():
    text = "2.1 The office is a friendly place to work in every day. 2.2 Staff receive 25 days of leave per year."
    p = Passage("f", None, None, 0, 0, len(text), text)
    assert focus_sentences(p, 1) == ["Staff receive 25 days of leave per year."]
    assert focus_sentences(p, 5) == ["The office is a friendly place to work in every day.", "Staff receive 25 days of leave per year."]


def test_a_contents_page_has_no_focus_sentence():
    text = "Section 4: Benefits Section 7: Re-employment Policy Study Loan Dental Benefits"
    assert focus_sentences(Passage("f", 2, None, 0, 0, len(text), text), 3) == []
