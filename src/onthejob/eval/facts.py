"""Fact match: the share of required facts an answer states, and the base-vs-tuned table the main
job prints.

    ojt eval-facts RUN --data examples/hr/eval.jsonl

Each eval record carries ``facts``: short strings a correct answer must contain (case and
whitespace insensitive), like the ``token_presence`` sets of the HR question data.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from onthejob.errors import DataError


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def fact_recall(answer: str, facts: list[str]) -> float:
    """Fraction of ``facts`` found in ``answer``; 1.0 when there is nothing to find."""
    if not facts:
        return 1.0
    text = _norm(answer)
    return sum(1 for f in facts if _norm(f) in text) / len(facts)


@dataclass
class Question:
    messages: list[dict]  # the conversation up to the question (reference answer removed)
    reference: str
    facts: list[str]
    line: int


def read_questions(path: str | Path) -> list[Question]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e})") from None
            messages = record.get("messages") or []
            if not messages or messages[-1].get("role") != "assistant":
                raise DataError(f"{path}:{n}: the last message must be the reference assistant answer")
            facts = record.get("facts") or []
            if not isinstance(facts, list) or not all(isinstance(x, str) for x in facts):
                raise DataError(f"{path}:{n}: 'facts' must be a list of strings")
            out.append(Question(messages[:-1], messages[-1]["content"], facts, n))
    if not out:
        raise DataError(f"{path}: no questions")
    return out


def score_model(name: str, questions: list[Question], *, max_new_tokens: int = 96, batch_size: int = 16) -> dict:
    """Answer every question with one model (greedy) and score fact recall."""
    from tqdm import tqdm

    from onthejob.models.adapters import load_for_inference
    from onthejob.serve.engine import Engine, SamplingParams

    loaded = load_for_inference(name)
    engine = Engine(loaded.model, loaded.tokenizer)
    with tqdm(total=len(questions), desc=f"answering with {Path(name).name}", unit="q", file=sys.stderr) as bar:
        done = engine.generate([q.messages for q in questions], SamplingParams(max_new_tokens=max_new_tokens), batch_size=batch_size, progress=bar.update)
    scores = [fact_recall(c.text, q.facts) for c, q in zip(done, questions)]
    return {
        "model": name,
        "answers": [c.text for c in done],
        "scores": scores,
        "fact_match": sum(scores) / len(scores),
        "stopped": sum(1 for c in done if c.finish_reason == "stop") / len(done),
    }


def side_by_side(base: str, tuned: str, data: str | Path, *, out: str | Path | None = None, show: int = 8) -> dict:
    """Answer the held-out questions with both models and print the comparison."""
    questions = read_questions(data)
    a = score_model(base, questions)
    b = score_model(tuned, questions)
    lines = [f"\n{'question':<48} {'base':<30} {'tuned':<30}"]
    for q, x, y in list(zip(questions, a["answers"], b["answers"]))[:show]:
        lines.append(f"{_cut(q.messages[-1]['content'], 48)} {_cut(x, 30)} {_cut(y, 30)}")
    lines.append("")
    lines.append(f"fact match on {len(questions)} held-out questions: base {a['fact_match']:.0%}, tuned {b['fact_match']:.0%}")
    lines.append(f"answers that ended by themselves (end-of-turn): base {a['stopped']:.0%}, tuned {b['stopped']:.0%}")
    print("\n".join(lines))
    result = {"data": str(data), "base": a, "tuned": b, "facts": [q.facts for q in questions]}
    if out:
        from onthejob.fsutil import write_json

        write_json(out, result)
    return result


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return (text[: width - 1] + "…") if len(text) > width else text.ljust(width)
