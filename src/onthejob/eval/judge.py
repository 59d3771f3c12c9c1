"""An optional LLM judge: another model grades each answer 1-5 against the reference.

    from onthejob.eval.judge import judge
    grades = judge(items, answers, base_url="http://localhost:8000/v1", model="judge-model")
    grades[0]  # {"line": 1, "score": 4, "reason": "Correct but omits the notice period."}

Any OpenAI-compatible endpoint works (``ojt serve``, vLLM, llama.cpp, a hosted API), through the
official ``openai`` client. The rubric and the prompt are module constants; pass ``rubric`` or
``prompt`` as text or as the path of a file to replace them. The prompt must contain {rubric},
{question}, {reference} and {answer}. The judge is asked for JSON; a reply without a usable score
gets ``score: None`` and the reply as the reason, so one bad grade never loses the others.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from onthejob.errors import ConfigError, ModelError
from onthejob.eval.data import EvalItem

RUBRIC = """\
5: correct and complete; says everything the reference says that matters, nothing false.
4: correct, but misses a minor detail of the reference or adds harmless extra text.
3: partly correct: the main point is right, but an important detail is missing or wrong.
2: mostly wrong or off-topic, with a fragment of the right answer.
1: wrong, contradicts the reference, refuses, or is empty."""

PROMPT = """\
You grade answers to questions against a reference answer. Judge the facts, not the wording or
style: an answer phrased differently from the reference can score 5.

Rubric:
{rubric}

Question:
{question}

Reference answer:
{reference}

Answer to grade:
{answer}

Reply with JSON only: {{"score": <integer 1-5>, "reason": "<one sentence>"}}"""

_FIELDS = ("{rubric}", "{question}", "{reference}", "{answer}")
_JSON = re.compile(r"\{.*\}", re.DOTALL)
_SCORE = re.compile(r"score\W{0,3}([1-5])\b", re.IGNORECASE)


def judge(items: Sequence[EvalItem], answers: Sequence[str], *, base_url: str, model: str,
          api_key: str | None = None, rubric: str | Path | None = None, prompt: str | Path | None = None,
          max_tokens: int = 200) -> list[dict]:
    """One ``{"line", "score" (1-5 or None), "reason"}`` per item, in order."""
    import openai

    if len(items) != len(answers):
        raise ValueError(f"judge needs one answer per item, got {len(answers)} for {len(items)}")
    rubric_text = _text(rubric, RUBRIC)
    template = _text(prompt, PROMPT)
    missing = [f for f in _FIELDS if f not in template]
    if missing:
        raise ConfigError(f"the judge prompt lacks {', '.join(missing)}", fix="write all four fields in it")
    key = api_key or os.environ.get("OPENAI_API_KEY") or os.environ.get("ONTHEJOB_API_KEY") or "none"
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=1)
    out = []
    for item, answer in zip(items, answers):
        text = template.format(rubric=rubric_text, question=item.question, reference=item.reference, answer=answer)
        try:
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], temperature=0.0, max_tokens=max_tokens
            )
        except openai.APIConnectionError as e:
            raise ModelError(f"cannot reach the judge at {base_url}: {e}", fix="check the judge URL") from e
        except openai.APIStatusError as e:
            raise ModelError(f"the judge at {base_url} refused: {e.status_code} {e.message}",
                             fix="check the judge model name and API key") from e
        score, reason = parse_reply(reply.choices[0].message.content or "")
        out.append({"line": item.line, "score": score, "reason": reason})
    return out


def parse_reply(reply: str) -> tuple[int | None, str]:
    """(score, reason) from the judge's reply: JSON first, then a "score: N" anywhere."""
    match = _JSON.search(reply)
    if match:
        try:
            data = json.loads(match.group(0))
        except ValueError:
            data = None
        if isinstance(data, dict):
            score = data.get("score")
            if isinstance(score, int | float) and float(score).is_integer() and 1 <= score <= 5:
                return int(score), str(data.get("reason", "")).strip()
    loose = _SCORE.search(reply)
    if loose:
        return int(loose.group(1)), reply.strip()
    return None, f"no score in the judge's reply: {reply.strip()[:200]}"


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
