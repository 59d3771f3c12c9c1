"""The verdict names a winner only when the paired bootstrap says so, and always the metric and n."""

from types import SimpleNamespace

from onthejob.eval.run import aggregate
from onthejob.eval.verdict import grounded_sentence, headline, paired, verdict

LABELS = {"prompt": "prompting", "rag": "RAG", "ft": "fine-tuning", "ft+rag": "fine-tuning + RAG"}


def arm(scores):
    rows = [{"line": i, "facts_recall": s} for i, s in enumerate(scores, 1)]
    return SimpleNamespace(per_example=rows, aggregates=aggregate(rows))


def test_a_winner_is_named_only_when_ahead_of_every_arm():
    evals = {"prompt": arm([0.0] * 40), "rag": arm([1.0, 0.0] * 20), "ft": arm([1.0] * 40)}
    text = headline(evals, LABELS, "facts_recall", correct={"prompt": 0, "rag": 20, "ft": 40})
    assert text.startswith("fine-tuning wins on facts_recall over 40 questions: 1.00 (40 of 40 correct), "
                           "significantly ahead of every other arm (RAG 0.50: +0.50, 95% CI ")
    assert "intervals are wide" not in text  # 40 questions


def test_indistinguishable_arms_are_named_together_with_whom_they_beat():
    ft = [1.0] * 36 + [0.0] * 4
    both = [1.0] * 35 + [0.0] * 5  # one question apart: no difference to speak of
    evals = {"prompt": arm([0.0] * 40), "ft": arm(ft), "ft+rag": arm(both)}
    text = headline(evals, LABELS, "facts_recall")
    assert text.startswith("No arm wins on facts_recall over 40 questions: fine-tuning (0.90) and fine-tuning + RAG (0.88) "
                           "are indistinguishable (the largest gap, fine-tuning vs fine-tuning + RAG, is +0.03, 95% CI ")
    assert text.endswith("not significant); both are significantly ahead of prompting.")


def test_few_questions_say_the_intervals_are_wide_and_two_arms_read_plainly():
    evals = {"base": arm([0.0] * 10), "tuned": arm([1.0] * 6 + [0.0] * 4)}
    labels = {"base": "base", "tuned": "tuned"}
    text = verdict(evals, labels, "facts_recall", correct={"base": 0, "tuned": 6},
                   comparisons=[paired(evals, "tuned", "base", "facts_recall", 0)])
    first, pair = text.splitlines()
    assert first.startswith("tuned wins on facts_recall over 10 questions: 0.60 (6 of 10 correct), significantly ahead of base (base 0.00: +0.60")
    assert first.endswith("With only 10 questions the intervals are wide: add questions for a firmer verdict.")
    assert pair.startswith("tuned against base: 6 vs 0 of 10 correct; facts_recall +0.60, significant (95% CI ")
    even = {"base": arm([1.0, 0.0] * 5), "tuned": arm([0.0, 1.0] * 5)}
    assert headline(even, labels, "facts_recall").startswith("No arm wins on facts_recall over 10 questions: base (0.50) and tuned (0.50)")


def test_one_arm_and_no_scores():
    assert headline({"ft": arm([1.0] * 30)}, LABELS, "facts_recall", correct={"ft": 30}) == \
        "fine-tuning: facts_recall 1.00 over 30 questions (30 of 30 correct)."
    assert headline({"ft": arm([None] * 3)}, LABELS, "facts_recall").startswith("No facts_recall scores to compare")


def test_grounded_sentence_reads_the_aggregates():
    rows = [{"line": 1, "citation_precision": 1.0, "answer_support": 0.8, "abstained": None, "confidently_wrong": 0.0},
            {"line": 2, "citation_precision": 0.5, "answer_support": 0.6, "abstained": None, "confidently_wrong": 1.0},
            {"line": 3, "citation_precision": None, "answer_support": None, "abstained": 1.0, "confidently_wrong": 0.0},
            {"line": 4, "citation_precision": None, "answer_support": 0.4, "abstained": 0.0, "confidently_wrong": 1.0}]
    assert grounded_sentence("RAG", aggregate(rows)) == (
        "RAG: citation precision 0.75 (2 answers cite a passage), answer support 0.60, abstains on 1 of 2 questions "
        "the documents do not cover, confidently wrong on 2 of 4.")
    assert grounded_sentence("prompting", aggregate([{"line": 1, "confidently_wrong": 0.0}])) is None
    uncited = [{"line": 1, "citation_precision": None, "answer_support": 0.5}]
    assert grounded_sentence("RAG", aggregate(uncited)) == "RAG: no answer cites a passage as [n], answer support 0.50."
