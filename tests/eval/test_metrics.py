"""Each metric against numbers worked out by hand in the comments."""

from types import SimpleNamespace

import pytest

from onthejob.errors import ConfigError
from onthejob.eval import metrics
from onthejob.eval.data import EvalItem
from onthejob.eval.metrics import METRICS, abstained, answer_support, citation_precision, confidently_wrong, get_metric, metric, score
from onthejob.eval.run import Grounded
from onthejob.generate.request import Completion


def item(reference="cat sat", **kw) -> EvalItem:
    return EvalItem(1, [{"role": "user", "content": "q"}], reference, **kw)


def done(text, *, finish="stop", tokens=10, seconds=2.0) -> Completion:
    return Completion(text, [], finish, 5, tokens, seconds)


def m(name, text, **kw):
    return METRICS[name](item(**kw), done(text))


def test_exact_match_normalises_case_punctuation_articles_and_spaces():
    assert m("exact_match", "The  Cat, sat!", reference="cat sat") == 1.0
    assert m("exact_match", "a cat sat.", reference="The cat sat") == 1.0
    assert m("exact_match", "cat sits", reference="cat sat") == 0.0
    assert m("exact_match", "theater cat sat", reference="cat sat") == 0.0  # "the" only as a word


def test_token_f1_by_hand():
    # pred {cat, sat} (the dropped), ref {cat, sat, down} (a dropped): P = 2/2, R = 2/3
    # F1 = 2 * 1 * 2/3 / (1 + 2/3) = 0.8
    assert m("token_f1", "the cat sat", reference="a cat sat down") == pytest.approx(0.8)
    # repeated tokens count once per match: pred [cat, cat, dog], ref [cat, dog, dog, bird]
    # common = min(2,1) + min(1,2) = 2; P = 2/3, R = 2/4; F1 = (2/3) / (7/6) = 4/7
    assert m("token_f1", "cat cat dog", reference="cat dog dog bird") == pytest.approx(4 / 7)
    assert m("token_f1", "nothing shared", reference="cat sat") == 0.0
    assert m("token_f1", "the", reference="a") == 1.0  # both empty after normalisation


def test_rouge_l_by_hand():
    # cand [cat, sat, on, mat], ref [cat, on, mat]: LCS = cat on mat = 3; P = 3/4, R = 3/3
    # F = 2 * 3/4 * 1 / (3/4 + 1) = 6/7
    assert m("rouge_l", "cat sat on mat", reference="cat on the mat") == pytest.approx(6 / 7)
    # same bag of words, reversed order: token F1 is 1, but the LCS is one word: P = R = 1/3
    assert m("token_f1", "mat on cat", reference="cat on mat") == 1.0
    assert m("rouge_l", "mat on cat", reference="cat on mat") == pytest.approx(1 / 3)
    # police [killed] gunman: LCS = police gunman = 2 of 3 each side
    assert m("rouge_l", "police kill the gunman", reference="police killed the gunman") == pytest.approx(2 / 3)


def test_lcs_length():
    assert metrics.lcs_length(list("ABCBDAB"), list("BDCABA")) == 4  # the CLRS example
    assert metrics.lcs_length([], ["a"]) == 0


def test_facts_recall_is_case_and_whitespace_insensitive():
    answer = "The  PROBATION period is 3\nmonths."
    assert m("facts_recall", answer, facts=["3 months", "probation"]) == 1.0
    assert m("facts_recall", answer, facts=["3 months", "6 weeks"]) == 0.5
    assert m("facts_recall", answer, facts=["3 months", "6 weeks", "notice", "Probation"]) == 0.5
    assert m("facts_recall", answer) is None  # no facts: not applicable


def test_facts_recall_reads_numbers_and_alternatives_like_a_person():
    answer = "Full-time employees accrue 10 days of sick leave per calendar year."
    assert m("facts_recall", answer, facts=["ten days", "full time"]) == 1.0  # a substring match found neither
    assert m("facts_recall", answer, facts=[["two weeks", "10 days"], "13 months"]) == 0.5
    assert m("facts_recall", answer, facts=["100 days"]) == 0.0
    assert metrics.fact_recall(answer, ["ten days"]) == 1.0  # still importable from metrics


def test_format_valid_regex():
    assert m("format_valid", "21 days", regex=r"^\d+ days$") == 1.0
    assert m("format_valid", "twenty-one days", regex=r"^\d+ days$") == 0.0
    assert m("format_valid", "anything") is None  # no rules


SCHEMA = {"type": "object", "required": ["days"], "properties": {"days": {"type": "integer"}}}


def test_format_valid_json_schema():
    assert m("format_valid", '{"days": 21}', json_schema=SCHEMA) == 1.0
    assert m("format_valid", '{"days": "21"}', json_schema=SCHEMA) == 0.0  # wrong type
    assert m("format_valid", '{"weeks": 3}', json_schema=SCHEMA) == 0.0  # missing key
    assert m("format_valid", "days: 21", json_schema=SCHEMA) == 0.0  # not JSON
    assert m("format_valid", '```json\n{"days": 21}\n```', json_schema=SCHEMA) == 1.0  # one fenced block
    # both rules must hold
    assert m("format_valid", '{"days": 21}', json_schema=SCHEMA, regex=r"weeks") == 0.0
    assert m("format_valid", '{"days": 21}', json_schema=SCHEMA, regex=r"days") == 1.0


def test_generation_metrics():
    it = item()
    c = done("x", finish="length", tokens=10, seconds=2.0)
    assert METRICS["answer_tokens"](it, c) == 10.0
    assert METRICS["stopped"](it, c) == 0.0
    assert METRICS["stopped"](it, done("x", finish="stop")) == 1.0
    assert METRICS["latency_s"](it, c) == 2.0
    assert METRICS["tokens_per_s"](it, c) == 5.0
    not_asked = done("x", tokens=0, seconds=0.0)  # RAG's NOT_COVERED: no model call
    assert METRICS["latency_s"](it, not_asked) is None
    assert METRICS["tokens_per_s"](it, not_asked) is None


def test_score_runs_every_registered_metric_including_new_ones():
    @metric("shouts")
    def shouts(it, c):
        return float(c.text.isupper())

    try:
        result = score(item(), done("CAT SAT"))
        assert list(result) == list(METRICS)
        assert result["shouts"] == 1.0 and result["exact_match"] == 1.0 and result["facts_recall"] is None
        assert score(item(), done("cat"), ["token_f1"]) == {"token_f1": pytest.approx(2 / 3)}
    finally:
        del METRICS["shouts"]


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(ConfigError, match="token_f1"):
        get_metric("bleu")


# --- grounded answers --------------------------------------------------------------------------



PASSAGES = [{"n": 1, "doc": "h.md", "text": "Full-time staff get 27 days of annual leave."},
            {"n": 2, "doc": "h.md", "text": "The office is in Dundee."}]


def grounded(text, passages=PASSAGES):
    return Grounded(SimpleNamespace(text=text, finish_reason="stop", completion_tokens=5, seconds=0.1), passages)


def eval_item(facts=(), covered=True):
    return EvalItem(1, [{"role": "user", "content": "q"}], "ref", list(facts), covered=covered)


def test_citation_precision_checks_the_cited_passage_holds_the_stated_fact():
    item = eval_item(["27 days"])
    assert citation_precision(item, grounded("You get twenty-seven days [1].")) == 1.0
    assert citation_precision(item, grounded("You get 27 days [2].")) == 0.0  # cites the wrong passage
    assert citation_precision(item, grounded("You get 27 days [1][2].")) == 0.5
    assert citation_precision(item, grounded("You get 27 days.")) is None  # no citation
    assert citation_precision(item, grounded("You get 30 days [1].")) is None  # no fact stated
    assert citation_precision(item, SimpleNamespace(text="27 days [1]")) is None  # an arm without passages


def test_answer_support_is_the_share_of_content_words_in_the_passages():
    item = eval_item(["27 days"])
    assert answer_support(item, grounded("Staff get 27 days of annual leave [1].")) == 1.0
    half = answer_support(item, grounded("Staff get 27 days, plus a bonus and free lunches."))
    assert 0.3 < half < 0.7
    assert answer_support(item, grounded("The documents I have do not cover this.")) is None  # a decline
    assert answer_support(item, grounded("27 days", passages=[])) is None


def test_abstention_and_confidently_wrong():
    uncovered, covered = eval_item(covered=False), eval_item(["27 days"])
    assert abstained(uncovered, grounded("The documents I have do not cover this.")) == 1.0
    assert abstained(uncovered, grounded("Yes, dogs are welcome.")) == 0.0
    assert abstained(covered, grounded("27 days")) is None  # only asked of uncovered questions
    assert confidently_wrong(uncovered, grounded("Yes, dogs are welcome.")) == 1.0
    assert confidently_wrong(uncovered, grounded("I don't know.")) == 0.0
    assert confidently_wrong(covered, grounded("You get 30 days.")) == 1.0
    assert confidently_wrong(covered, grounded("You get 27 days.")) == 0.0
    assert confidently_wrong(eval_item(), grounded("anything")) is None  # no facts to judge by
