import json
import math

import numpy as np

from onthejob.data.schema import Example
from onthejob.eval.data import EvalItem
from onthejob.eval.leakage import PSEUDO_DOCS, find_leaks, run_leakage


def train(*questions):
    return [Example([{"role": "user", "content": q}, {"role": "assistant", "content": "answer"}],
                    source="train.jsonl", line=n) for n, q in enumerate(questions, 1)]


def evals(*questions):
    return [EvalItem(n, [{"role": "user", "content": q}], "ref") for n, q in enumerate(questions, 1)]


def idf(df, questions):
    """An n-gram's weight as the module documents it: log((N + P + 1) / (df + 1))."""
    return math.log((questions + PSEUDO_DOCS + 1) / (df + 1))


TRAIN = train(
    "How many days of annual leave do staff get after five years of service?",
    "What is the probation period for staff appointed at Grade N1 to N3?",
    "Context: the handbook, section 4. Question: can the probation period be extended for staff on contract?",
)


def test_exact_near_and_clean():
    leaks = find_leaks(TRAIN, evals(
        "how many days of ANNUAL leave do staff get after five years of service",  # exact after normalising
        "What is the probation period for staff appointed at Grade N1 to N6?",  # last word changed
        "Can the probation period be extended for staff on contract?",  # pasted into a longer prompt
        "Who approves unpaid leave for a staff member?",  # not in training
    ))
    got = {(k.eval_line, k.train, k.kind) for k in leaks}
    assert got == {(1, "train.jsonl:1", "exact"), (2, "train.jsonl:2", "near"), (3, "train.jsonl:3", "near")}
    score = {k.eval_line: k.score for k in leaks}
    # line 2, normalised: 12 words ("the" dropped), so 5 8-grams a side; only the last 8-gram
    # holds the changed word, so 4 are shared. Over the 7 questions the shared ones are in 2
    # (train and eval line 2), the changed one in 1, so it weighs a little more:
    # containment 4 w2 / (4 w2 + w1) = 0.77 (0.8 unweighted) beats Jaccard 4 w2 / (4 w2 + 2 w1)
    w1, w2 = idf(1, 7), idf(2, 7)
    assert score[2] == round(4 * w2 / (4 * w2 + w1), 4) == 0.772
    # line 3: 9 words, 2 8-grams, both inside the training prompt: containment 1
    assert score[3] == 1.0


def test_threshold_and_ngram_control_near():
    items = evals("What is the probation period for staff appointed at Grade N4 to N6?")
    # words 10 and 12 changed: 8-grams starting at 1 and 2 of 5 are shared (each in 2 of the 4
    # questions, the other 3 in 1): containment 2 w2 / (2 w2 + 3 w1) = 0.36 (2/5 unweighted)
    w1, w2 = idf(1, 4), idf(2, 4)
    assert find_leaks(TRAIN, items) == []
    assert [k.score for k in find_leaks(TRAIN, items, threshold=0.35)] == [round(2 * w2 / (2 * w2 + 3 * w1), 4)]
    assert find_leaks(TRAIN, items, threshold=0.4) == []
    assert [k.score for k in find_leaks(TRAIN, items, threshold=0.4, weighted=False)] == [0.4]
    # 4-grams: 9 a side, those starting at words 1-6 avoid word 10: containment
    # 6 w2 / (6 w2 + 3 w1) = 0.63 (6/9 unweighted)
    assert [k.score for k in find_leaks(TRAIN, items, ngram=4)] == [round(6 * w2 / (6 * w2 + 3 * w1), 4)]
    assert find_leaks(TRAIN, items, ngram=20, threshold=0.1) == []  # one 12-gram, not shared
    assert find_leaks(train("Totally unrelated text about printers and cables"), items) == []


def test_short_questions_only_leak_whole():
    leaks = find_leaks(train("Is overtime paid for staff?"), evals("overtime paid", "Is overtime paid?"))
    assert [(k.eval_line, k.kind) for k in leaks] == [(1, "near"), (2, "near")]  # contained whole
    assert find_leaks(train("Is overtime paid for staff?"), evals("paid overtime")) == []


# LegalBench/ContractNLI style, written for this test: six invented NDAs, each asked hypotheses
# of our own wording. Every question opens with the same words and each hypothesis is asked of
# several contracts, so most of a question's n-grams are shared with questions that ask
# something else.
NDAS = [("Harrowgate Biotech Ltd", "Pellam Analytics Inc"), ("Corvane Shipping", "Blue Tansy Foods"),
        ("Mirelow Studios", "Oakhurst Capital Partners"), ("Tessel Robotics", "Winterbourne Health Trust"),
        ("Quarrydale Mining Co", "Lumen Ferry Software"), ("Astraya Textiles", "Brackwell and Sons")]
HYPOTHESES = [
    # trained on (with NDAs 0-2)
    "Does the agreement allow the Receiving Party to share Confidential Information with its employees?",
    "Does the agreement require the return or destruction of Confidential Information when it ends?",
    "Does the agreement let the Receiving Party keep copies of Confidential Information that its backup "
    "systems make automatically?",
    "Does the agreement forbid the Receiving Party from telling anyone that the agreement itself exists?",
    "Does the agreement still bind the Receiving Party after it has been terminated or has expired?",
    # only asked in eval
    "Does the agreement allow the Receiving Party to disclose Confidential Information when a court or "
    "regulator orders it to?",
    "Does the agreement grant the Receiving Party a licence or any other right to the Confidential Information?",
    "Does the agreement exclude information that the Receiving Party already knew before it was disclosed to it?",
    "Does the agreement allow the Receiving Party to reverse engineer samples or prototypes that it receives?",
    "Does the agreement let the Receiving Party independently develop information similar to the "
    "Confidential Information?",
]


def nda(contract, hypothesis):
    a, b = NDAS[contract]
    return f"Consider the Non-Disclosure Agreement between {a} and {b}; {HYPOTHESES[hypothesis]}"


def test_templated_questions_are_not_near_but_their_copies_are():
    questions = [nda(c, h) for c in range(3) for h in range(5)]  # training line 5c + h + 1
    questions[14] = ("You are reviewing contracts for a client. Read the question below and answer it in one "
                     "word, then explain. Question: " + questions[14])
    # Different: a trained hypothesis asked of another contract (the answer lies in another
    # document: lines 1-15), or a trained contract asked a hypothesis never trained on (another
    # fact about it: lines 16-30). Knowing the training answers answers none of them.
    different = [nda(c, h) for c in range(3, 6) for h in range(5)] + [nda(c, h) for c in range(3) for h in range(5, 10)]
    planted = [
        nda(0, 0),  # 31: a copy
        nda(1, 1).replace("ends", "expires"),  # 32: one word changed
        nda(0, 3) + " Answer as of the date it was signed.",  # 33: a clause added
        "Question: " + nda(2, 2) + " Answer Yes or No.",  # 34: pasted into a prompt
        nda(2, 4),  # 35: the question inside the longer training prompt
    ]
    train_set, items = train(*questions), evals(*different, *planted)
    leaks = find_leaks(train_set, items)
    assert {(k.eval_line, k.train, k.kind) for k in leaks} == {
        (31, "train.jsonl:1", "exact"), (32, "train.jsonl:7", "near"), (33, "train.jsonl:4", "near"),
        (34, "train.jsonl:13", "near"), (35, "train.jsonl:15", "near")}
    assert {k.eval_line for k in leaks if k.score == 1.0} == {31, 35}  # weights keep a whole copy at 1
    # Counted plainly, a trained contract's name and a shared hypothesis opening ("Does the
    # agreement allow the Receiving Party to") make 7 of the different questions near.
    plain = find_leaks(train_set, items, weighted=False)
    assert {k.eval_line for k in plain if k.eval_line <= 30} == {16, 19, 20, 24, 25, 29, 30}
    assert {k.eval_line for k in plain if k.eval_line > 30} == {31, 32, 33, 34, 35}


class FakeEmbedder:
    """Vectors by lookup: the reworded question points the same way as the training one."""

    def encode(self, texts):
        table = {"annual": [1.0, 0.0], "holidays": [0.99, 0.141], "printer": [0.0, 1.0]}
        return np.asarray([next(v for k, v in table.items() if k in t.lower()) for t in texts])


def test_embedding_leaks_only_when_asked():
    train_set = train("How much annual leave do I get?", "My printer is broken")
    items = evals("Number of holidays per year?")
    assert find_leaks(train_set, items) == []
    [leak] = find_leaks(train_set, items, embed=True, embedder=FakeEmbedder())
    assert (leak.kind, leak.train) == ("embedding", "train.jsonl:1") and leak.score >= 0.95


def test_run_leakage_reads_files_and_reports(tmp_path):
    t = tmp_path / "train.jsonl"
    t.write_text("".join(json.dumps(e.to_record()) + "\n" for e in TRAIN), encoding="utf-8")
    e = tmp_path / "eval.jsonl"
    records = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "a"}]}
               for q in ("What is the probation period for staff appointed at Grade N1 to N3?", "Who are you?")]
    e.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    leaks, text = run_leakage(t, e)
    assert [(k.eval_line, k.train, k.kind) for k in leaks] == [(1, f"{t}:2", "exact")]
    assert text.splitlines()[0] == "1 of 2 eval questions also appear in the 3 training examples (50%)"
    assert "exact: 1" in text and f"eval line 1 ~ {t}:2 [exact 1.00]" in text
