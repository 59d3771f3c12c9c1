"""``ojt data synth``: documents in, training examples and a leak-free eval set out.

    ojt data synth handbook.pdf --out train.jsonl --eval-out eval.jsonl --style "formal, brief"

1. Documents are read into passages (``synth/sections.py``), and each passage's sentences with the
   most key facts become focus sentences (``per_passage`` of them).
2. The teacher writes one question and answer per focus sentence (``synth/prompts.py``), through
   the reply cache (``synth/teacher.py``): a rerun asks nothing, a killed run resumes.
3. Replies failing a check (unreadable, bad question, invented facts, no facts, copied) are
   dropped and counted; so is a question that nearly repeats one kept before (word-set Jaccard
   of at least ``near_duplicate``).
4. Passages, not examples, are split between training and eval: every question about a passage
   goes to the same side. The questions about one passage share its wording and facts, so an
   example-level split would put the same fact on both sides. Eval questions the n-gram check
   of ``ojt data leakage`` still finds in training (a fact stated in two passages) are removed.
5. Both files are written atomically, canonical chat JSONL: ``messages``, ``facts`` and
   ``source`` (file, page, section, character span, focus sentence).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from onthejob.console import say
from onthejob.errors import DataError, RagError
from onthejob.synth import prompts as P
from onthejob.synth.config import SynthConfig
from onthejob.synth.sections import Passage, focus_sentences, read_passages
from onthejob.synth.teacher import Cache, ask, open_teacher


@dataclass
class Task:
    passage: Passage
    focus: str
    messages: list[dict]


@dataclass
class Report:
    files: int = 0
    passages: int = 0
    asked: int = 0
    cached: int = 0
    drops: Counter = field(default_factory=Counter)
    train: int = 0
    eval: int = 0
    leaked: int = 0
    train_facts: int = 0
    eval_facts: int = 0
    shared_facts: int = 0
    from_document: int = 0  # kept with the focus sentence as the answer
    seconds: float = 0.0

    def text(self, config: SynthConfig) -> str:
        kept = self.train + self.eval + self.leaked
        drops = ", ".join(f"{n} {why}" for why, n in self.drops.most_common()) or "none"
        lines = [f"{self.files} documents, {self.passages} passages: {self.asked} questions asked "
                 f"({self.cached} from the cache) in {self.seconds:.0f} s",
                 f"kept {kept} of {self.asked} ({self.from_document} answered with the document's own sentence); dropped: {drops}",
                 f"wrote {self.train} training examples to {config.out} ({self.train_facts} distinct facts)"]
        if config.eval_out:
            lines.append(f"wrote {self.eval} eval questions to {config.eval_out} ({self.eval_facts} distinct facts; "
                         f"{self.shared_facts} also stated in training; {self.leaked} questions removed as leaks)")
        return "\n".join(lines)


def run(config: SynthConfig) -> str:
    if config.eval_out and config.eval_out == config.out:
        raise DataError(f"--out and --eval-out are both {config.out}", fix="give the eval set its own file")
    started = time.monotonic()
    report = Report()
    passages = _passages(config, report)
    shots = _shots(config)
    tasks = [Task(p, f, P.prompt(f, p.heading, config.style, shots))
             for p in passages for f in focus_sentences(p, config.per_passage)]
    if not tasks:
        raise DataError(f"{', '.join(config.paths)}: no passage holds a sentence to ask about",
                        fix="give documents with running text (a scanned PDF needs OCR first)")
    report.asked = len(tasks)
    replies = _replies(config, tasks, report)
    records = _examples(config, tasks, replies, report)
    if not records:
        top = report.drops.most_common(1)[0][0] if report.drops else "none"
        raise DataError(f"the teacher wrote no usable example: all {len(tasks)} replies failed the checks (most: {top})",
                        fix="try a stronger teacher (--teacher-model FOLDER or --teacher-url), or look at one reply with --per-passage 1")
    train, held = _split(config, records)
    _write(config, train, held, report)
    report.seconds = time.monotonic() - started
    return report.text(config)


def _passages(config: SynthConfig, report: Report) -> list[Passage]:
    def on_file(path, n):
        report.files += 1
        if n == 0:
            hint = " (a scanned PDF needs OCR first)" if path.suffix.lower() == ".pdf" else ""
            say(f"warning: {path} has no text{hint}; skipped")

    passages = read_passages(config.paths, on_file=on_file)
    if report.files == 0:
        raise RagError(f"no supported documents in {', '.join(config.paths)}", fix="give .txt .md .html .pdf .docx .csv or .jsonl files")
    report.passages = len(passages)
    return passages


def _shots(config: SynthConfig) -> list[tuple[str, str]]:
    return [(e.question, e.answer) for e in config.examples]


def _replies(config: SynthConfig, tasks: list[Task], report: Report) -> list[str]:
    from tqdm import tqdm

    teacher = open_teacher(config.teacher)
    cache = Cache(config.cache)
    bar = tqdm(total=len(tasks), desc="synth", unit="q", file=sys.stderr, dynamic_ncols=True, disable=None)
    try:
        replies, report.cached = ask(teacher, config.teacher, [t.messages for t in tasks], cache=cache, progress=bar.update)
    finally:
        bar.close()
        cache.close()
    return replies


def _examples(config: SynthConfig, tasks: list[Task], replies: list[str], report: Report) -> list[dict]:
    shots = _shots(config)
    kept: list[dict] = []
    seen: list[set[str]] = []
    for task, reply in zip(tasks, replies, strict=True):
        pair = P.check(reply, focus=task.focus, passage=task.passage.text, examples=shots)
        if pair.reason:
            report.drops[pair.reason] += 1
            continue
        words = set(P.norm(pair.question).split())
        if any(len(words & s) / len(words | s) >= config.near_duplicate for s in seen):
            report.drops["near-duplicate"] += 1
            continue
        seen.append(words)
        messages = ([{"role": "system", "content": config.system}] if config.system else []) + [
            {"role": "user", "content": pair.question}, {"role": "assistant", "content": pair.answer}]
        source = {**task.passage.source(), "focus": task.focus, "answer_from": pair.answer_from}
        report.from_document += pair.answer_from == "document"
        kept.append({"messages": messages, "facts": pair.facts, "source": source, "_passage": task.passage.id})
    return kept


def _split(config: SynthConfig, records: list[dict]) -> tuple[list[dict], list[dict]]:
    if not config.eval_out:
        return records, []
    ids = sorted({r["_passage"] for r in records})
    rank = {p: hashlib.sha256(f"{config.seed}:{_portable(p)}".encode()).hexdigest() for p in ids}
    n_eval = max(1, round(config.eval_split * len(ids))) if len(ids) > 1 else 0
    held = set(sorted(ids, key=rank.get)[:n_eval])
    if not held:
        raise DataError("all examples come from one passage: nothing can be held out for eval without leaking",
                        fix="give more documents, or drop --eval-out")
    return [r for r in records if r["_passage"] not in held], [r for r in records if r["_passage"] in held]


def _portable(passage_id: str) -> str:
    """A passage id without the folder its file is in: the same split on every machine."""
    return Path(passage_id).name


def _write(config: SynthConfig, train: list[dict], held: list[dict], report: Report) -> None:
    from onthejob.fsutil import write_jsonl

    if held:
        held, report.leaked = _without_leaks(train, held)
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("_")} for r in rs]  # noqa: E731
    facts = lambda rs: {f.casefold() for r in rs for f in r["facts"]}  # noqa: E731
    report.train, report.eval = len(train), len(held)
    report.train_facts, report.eval_facts = len(facts(train)), len(facts(held))
    report.shared_facts = len(facts(train) & facts(held))
    if config.eval_out:
        if not held:
            raise DataError("every eval question leaked into training; no eval set written",
                            fix="raise --eval-split or give more documents")
        write_jsonl(config.eval_out, strip(held))
    write_jsonl(config.out, strip(train))


def _without_leaks(train: list[dict], held: list[dict]) -> tuple[list[dict], int]:
    from onthejob.data.schema import Example
    from onthejob.eval.data import EvalItem
    from onthejob.eval.leakage import find_leaks

    examples = [Example(r["messages"], source="train", line=i) for i, r in enumerate(train, 1)]
    items = [EvalItem(i, r["messages"][:-1], r["messages"][-1]["content"], r["facts"]) for i, r in enumerate(held, 1)]
    leaked = {k.eval_line for k in find_leaks(examples, items)}
    return [r for i, r in enumerate(held, 1) if i not in leaked], len(leaked)
