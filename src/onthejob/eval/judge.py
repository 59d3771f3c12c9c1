"""An optional LLM judge: another model grades each answer against the reference on a fixed rubric.

    from onthejob.eval.judge import judge
    grades = judge(items, answers, base_url="http://localhost:8000/v1", model="judge-model")
    grades[0]  # {"line": 1, "grade": "partly", "score": 0.5, "reason": "Right amount, wrong notice period."}

Any OpenAI-compatible endpoint works (``ojt serve``, vLLM, llama.cpp, a hosted API), through the
official ``openai`` client. The rubric has four grades, each worth a score the comparisons use:
correct 1, partly 0.5, wrong 0, refused 0 (an answer that declines is no answer, but it is told
apart from a wrong one because a model that says "I don't know" misleads no one). The rubric and
the prompt are module constants, stored beside the grades in every report; pass ``prompt`` as text
or as the path of a file to replace the prompt (it must contain {rubric}, {question}, {reference}
and {answer}). The judge is asked for JSON; a reply without a usable grade gets ``grade: None``
and the reply as the reason, so one bad grade never loses the others.

``agreement`` sets the judge beside the facts: on how many answers both say "correct", and which
answers one credits and the other does not, so a user sees when the facts are too strict.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from onthejob.errors import ConfigError, ModelError
from onthejob.eval.data import EvalItem

GRADES = {"correct": 1.0, "partly": 0.5, "wrong": 0.0, "refused": 0.0}

RUBRIC = """\
correct: says what the reference says that matters, and nothing that contradicts it. Other wording, extra harmless detail and a different order are fine.
partly: the main point is right, but an important detail of the reference is missing or wrong.
wrong: contradicts the reference, answers another question, or states the key fact wrongly.
refused: declines to answer, says it does not know, or says the documents do not cover it."""

PROMPT = """\
You grade answers to questions against a reference answer. Judge the facts, not the wording or
style: an answer phrased differently from the reference can be correct.

Grades:
{rubric}

Question:
{question}

Reference answer:
{reference}

Answer to grade:
{answer}

Reply with JSON only: {{"grade": "correct" | "partly" | "wrong" | "refused", "reason": "<one sentence>"}}"""
# A small judge may echo the format line; its "correct" is no grade.
_ECHO = '{"grade": "correct" | "partly" | "wrong" | "refused", "reason": "<one sentence>"}'

_FIELDS = ("{rubric}", "{question}", "{reference}", "{answer}")
_JSON = re.compile(r"\{.*?\}", re.DOTALL)
_LOOSE = re.compile(r"grade\W{0,4}(correct|partly|wrong|refused)\b", re.IGNORECASE)
_REASON_CHARS = 500  # a judge that rambles is cut: the report shows one sentence


def judge(items: Sequence[EvalItem], answers: Sequence[str], *, base_url: str, model: str,
          api_key: str | None = None, prompt: str | Path | None = None, max_tokens: int = 200) -> list[dict]:
    """One ``{"line", "grade" (a GRADES key or None), "score", "reason"}`` per item, in order."""
    import openai

    if len(items) != len(answers):
        raise ValueError(f"judge needs one answer per item, got {len(answers)} for {len(items)}")
    template = _text(prompt, PROMPT)
    missing = [f for f in _FIELDS if f not in template]
    if missing:
        raise ConfigError(f"the judge prompt lacks {', '.join(missing)}", fix="write all four fields in it")
    key = api_key or os.environ.get("OPENAI_API_KEY") or os.environ.get("ONTHEJOB_API_KEY") or "none"
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=1)
    out = []
    for item, answer in zip(items, answers):
        text = template.format(rubric=RUBRIC, question=item.question, reference=item.reference, answer=answer)
        try:
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], temperature=0.0, max_tokens=max_tokens
            )
        except openai.APIConnectionError as e:
            raise ModelError(f"cannot reach the judge at {base_url}: {e}", fix="check the judge URL") from e
        except openai.APIStatusError as e:
            raise ModelError(f"the judge at {base_url} refused: {e.status_code} {e.message}",
                             fix="check the judge model name and API key") from e
        grade, reason = parse_reply(reply.choices[0].message.content or "")
        out.append({"line": item.line, "grade": grade, "score": GRADES.get(grade), "reason": reason})
    return out


def parse_reply(reply: str) -> tuple[str | None, str]:
    """(grade, reason) from the judge's reply: a JSON object first, then "grade: X" anywhere, once
    an echo of the prompt's format line is taken out."""
    reply = reply.replace(_ECHO, " ")
    for match in _JSON.finditer(reply):
        try:
            data = json.loads(match.group(0))
        except ValueError:
            continue
        grade = str(data.get("grade", "")).strip().lower() if isinstance(data, dict) else ""
        if grade in GRADES:
            return grade, str(data.get("reason", "")).strip()[:_REASON_CHARS]
    loose = _LOOSE.search(reply)
    if loose:
        return loose.group(1).lower(), reply.strip()[:_REASON_CHARS]
    return None, f"no grade in the judge's reply: {reply.strip()[:200]}"


def agreement(rows: list[dict]) -> dict | None:
    """Judge against facts over rows holding both ``judge`` (a grade) and ``facts_recall``.

    "Correct" by the facts: every fact stated; by the judge: the grade "correct". Returns the counts
    and the lines each side credits alone, or None when no row has both."""
    both = [r for r in rows if r.get("judge") in GRADES and r.get("facts_recall") is not None]
    if not both:
        return None
    by_facts = {r["line"] for r in both if r["facts_recall"] >= 1.0}
    by_judge = {r["line"] for r in both if r["judge"] == "correct"}
    agree = sum(1 for r in both if (r["line"] in by_facts) == (r["line"] in by_judge))
    return {"n": len(both), "agree": agree, "judge_only": sorted(by_judge - by_facts),
            "facts_only": sorted(by_facts - by_judge)}


def agreement_sentence(label: str, a: dict) -> str:
    """"fine-tuning: judge and facts agree on 44 of 50 answers; the judge credits 5 the facts miss (lines ...)"."""
    text = f"{label}: judge and facts agree on {a['agree']} of {a['n']} answers"
    if a["judge_only"]:
        text += (f"; the judge credits {len(a['judge_only'])} the facts miss (facts too strict?"
                 f" lines {_lines(a['judge_only'])})")
    if a["facts_only"]:
        text += f"; the facts credit {len(a['facts_only'])} the judge does not (lines {_lines(a['facts_only'])})"
    return text + "."


def _lines(lines: list[int], show: int = 8) -> str:
    text = ", ".join(str(x) for x in lines[:show])
    return text + (f" and {len(lines) - show} more" if len(lines) > show else "")


def _text(value: str | Path | None, default: str) -> str:
    """``value`` as text: None gives ``default``; a Path, or a string naming a file, is read."""
    if value is None:
        return default
    if isinstance(value, Path) or ("\n" not in value and len(value) < 4096 and Path(value).is_file()):
        try:
            return Path(value).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{value}: cannot read ({e.strerror})") from None
    return str(value)
