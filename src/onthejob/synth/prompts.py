"""What the teacher is asked, and how its replies are read and checked.

Every teacher, from the embedded 135M model to a hosted one, gets the same prompt: one focus
sentence of a passage, the passage's heading, the style wanted, and worked examples (the user's
``--example`` pairs, else two built-in ones about a made-up office) as earlier chat turns;
it replies ``Question: ...`` then ``Answer: ...``. A small model follows that form far more
often than it writes valid JSON, and a large one follows it always.

A reply becomes an example only when it passes every check, in this order (each failure is
counted under its name in the report):

- ``unreadable``: no ``Question:`` / ``Answer:`` pair in it;
- ``bad question``: it does not end in "?", is under 4 words, or speaks of "the text";
- ``off the text``: under half of its own words come from the focus sentence, it holds a number
  the passage does not, or it asks "how many" of a sentence without a number;
- ``invented facts``: a key fact of the answer (a number with its unit, a time, a date, an
  amount, a code; ``onthejob.synth.facts``) is not found in the passage, the way
  ``onthejob.eval.facts`` finds facts ("ten days" = "10 days"), or is negated there; or a
  number written in digits in the answer is not in the passage;
- ``no facts``: the answer carries no key fact of the focus sentence and, for a sentence without
  any, repeats no run of 4 content words of it;
- ``copied``: the answer repeats the question or the worked example.

A small teacher often writes a fair question and a wrong answer. When only the answer fails
(invented facts, no facts), the example is kept with the focus sentence itself as the answer,
as the document words it, and says so (``source.answer_from: "document"``); the report counts
these. ``fallback=False`` drops them instead.

The facts an example records are those it was checked by: the focus sentence's key facts found
in the answer and the answer's own (all found in the passage), or the repeated run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from onthejob.eval.facts import match_fact
from onthejob.synth.facts import key_facts, shared_run

SHOTS = [  # (text, question, answer): one rule with a number, one without
    ("Visitors must sign in at the front desk and wear a badge at all times; badges are returned by 6 pm.",
     "When must visitors return their badges?", "Visitors must return their badges by 6 pm."),
    ("Staff who travel abroad on company business must get approval from their manager before booking flights.",
     "Who has to approve a business trip abroad?", "Your manager must approve the trip before you book flights."),
]
REFERS_TO_TEXT = re.compile(r"\b(the|this|above|given) (text|passage|sentence|paragraph|document)\b", re.IGNORECASE)
REASONS = ("unreadable", "bad question", "off the text", "invented facts", "no facts", "copied")
ON_TOPIC = 0.5  # share of a question's content words that must come from its focus sentence
# words any question may use that the sentence need not hold
QUESTION_WORDS = frozenset("what which who whom whose when where why how much many long does do did is are was were can could "
                           "should would will may might must happen happens purpose mean means say says policy rule rules "
                           "staff employee employees someone anyone need required".split())


@dataclass
class Pair:
    question: str | None = None
    answer: str | None = None
    facts: list[str] = field(default_factory=list)
    answer_from: str = "teacher"  # or "document": the teacher's answer failed, its question did not
    reason: str | None = None  # None: kept; else one of REASONS


def instruction(focus: str, heading: str | None, style: str | None) -> str:
    topic = f"Topic: {heading}\n" if heading else ""
    how = f" The answer is {style}." if style else " The answer is one or two sentences."
    return (f"{topic}Text: {focus}\n\nWrite one question that this text answers, and its answer, stating the "
            f"facts of the text exactly.{how} Reply in this form:\nQuestion: ...\nAnswer: ...")


def prompt(focus: str, heading: str | None, style: str | None, examples: list[tuple[str, str]]) -> list[dict]:
    """The messages sent to the teacher for one focus sentence."""
    shots = [(a, q, a) for q, a in examples] if examples else SHOTS
    messages = [{"role": "system", "content": "You write question and answer pairs for training an assistant."}]
    for text, q, a in shots:
        messages.append({"role": "user", "content": instruction(text, None, style)})
        messages.append({"role": "assistant", "content": f"Question: {q}\nAnswer: {a}"})
    messages.append({"role": "user", "content": instruction(focus, heading, style)})
    return messages


_PAIR = re.compile(r"question\s*\d*\s*[:：]\s*(?P<q>.+?)\s*\n\s*(?:\**\s*)answer\s*\d*\s*[:：]\s*(?P<a>.+?)(?=\n\s*\**\s*question\s*\d*\s*[:：]|\Z)",
                   re.IGNORECASE | re.DOTALL)


def parse(reply: str) -> tuple[str, str] | None:
    """The first (question, answer) of a reply, markdown emphasis dropped."""
    m = _PAIR.search(reply.replace("**", "").replace("__", ""))
    if not m:
        return None
    q, a = " ".join(m["q"].split()), " ".join(m["a"].split())
    return (q, a) if q and a else None


def check(reply: str, *, focus: str, passage: str, examples: list[tuple[str, str]], fallback: bool = True) -> Pair:
    """The reply's pair and the facts it carries, or the reason it is dropped. ``fallback``: when
    the question passes and the answer fails (invented or no facts), answer with the focus
    sentence itself, as the document words it (``answer_from: "document"``)."""
    parsed = parse(reply)
    if parsed is None:
        return Pair(reason="unreadable")
    q, a = parsed
    pair = Pair(q, a)
    if not q.endswith("?") or len(q.split()) < 4 or REFERS_TO_TEXT.search(q):
        pair.reason = "bad question"
        return pair
    if not _on_topic(q, focus, passage):
        pair.reason = "off the text"
        return pair
    pair.reason, pair.facts = _answer_facts(a, focus, passage)
    if pair.reason in ("invented facts", "no facts") and fallback:
        reason, facts = _answer_facts(focus, focus, passage)
        if reason is None:
            pair.answer, pair.facts, pair.reason, pair.answer_from = focus, facts, None, "document"
            return pair
    if pair.reason is None:
        copies = {norm(q)} | {norm(x) for pair_ in (examples or [s[1:] for s in SHOTS]) for x in pair_}
        if norm(a) in copies:
            pair.reason, pair.facts = "copied", []
    return pair


def _answer_facts(a: str, focus: str, passage: str) -> tuple[str | None, list[str]]:
    own = key_facts(a)
    numbers = set(_NUMBER.findall(passage))
    if any(not _found(passage, f) for f in own) or any(n not in numbers for n in _NUMBER.findall(a)):
        return "invented facts", []
    carried = [f for f in key_facts(focus) if _found(a, f)]
    if carried:
        return None, carried + [f for f in own if f.casefold() not in {c.casefold() for c in carried}]
    run = None if key_facts(focus) else shared_run(a, focus)
    return ("no facts", []) if run is None else (None, [run])


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _on_topic(question: str, focus: str, passage: str) -> bool:
    """Most of the question's own words come from the focus sentence, and its numbers from the
    passage: a question the sentence cannot answer ("What is the maximum number of hours ...?"
    about a rule with no number) is dropped rather than answered with a guess."""
    from onthejob.eval.facts import content_words

    if any(n not in set(_NUMBER.findall(passage)) for n in _NUMBER.findall(question)):
        return False
    if re.search(r"\b(maximum|minimum|how many|how much|how long)\b", question, re.IGNORECASE) and not key_facts(focus):
        return False
    words = [w for w in content_words(question) if w not in QUESTION_WORDS]
    have = {w[:5] for w in content_words(focus)}
    return bool(words) and sum(w[:5] in have for w in words) >= ON_TOPIC * len(words)


def _found(text: str, fact: str) -> bool:
    m = match_fact(text, fact)
    return m.matched is not None  # a negated mention does not match (eval.facts)


def norm(text: str) -> str:
    """Casefolded words without punctuation: what "the same question" means to the checks."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())
