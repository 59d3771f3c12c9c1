"""``ojt data augment``: N rewordings of every user question (and optionally its answer), each
pointing to its original; and ``data.augment`` of ``ojt train``, which mixes them into a run.

    ojt data augment train.jsonl --paraphrases 4 --out aug.jsonl
    ojt data augment train.jsonl --paraphrases 4 --answers --out aug.jsonl --teacher-url http://127.0.0.1:8000/v1
    ojt train configs/hr-demo.yaml --data.augment '{paraphrases: 4}'

A model tuned on one wording of a question often misses the fact when it is asked another way.
Each example's last user message is reworded N ways by the teacher (``synth/teacher.py``: the
same teachers, reply cache and resuming as ``ojt data synth``). The teacher is often the embedded
135M model, so each prompt asks for one rewording only, of one kind: the k-th of ``STYLES``
("as a short, casual question", "formally", ...; beyond them, two styles combined), after one
worked example of that kind as an earlier chat turn. A reply is read as its first line with any
label ("Question:", "Paraphrase:") and quotes stripped.

A rewording is dropped, and counted under its reason, when it is ``empty``; repeats the worked
example or carries one of its facts ("Leeds", "9 pm") that the original lacks (``copied the
example``: a 135M teacher often does); is the original (``same as original``) or another rewording
of it (``duplicate``), after casefolding and dropping punctuation; is over 3x the original's
length (``too long``); ends without "?" where the original had one, or ends in "." or "!" where it
had none, an answer instead of a question (``not a question``); loses a key fact of the question
(``synth/facts.py``: numbers with units, times, dates, money, codes) or a name (a capitalised word
not opening a sentence), found as ``onthejob.eval.facts`` finds them (``lost a fact``); or states a
key fact the original does not (``added a fact``).

With ``answers``, the k-th rewording's answer is reworded too (``ANSWER_STYLES``), and used only
when it passes the same checks against the original answer (``duplicate`` and ``not a question``
aside), every one of the record's ``facts`` is still found, and it still ends a sentence where
the original did (``cut off``); otherwise that rewording keeps the original answer (counted
under why).

The output holds each original as it was (its other keys, such as ``facts`` and ``source``,
kept), followed by its rewordings: the same record with the new wording, plus
``"paraphrase_of": "FILE:LINE"`` (the original) and ``"paraphrase": k`` (which style, from 1).
In a run, the paraphrases of the training examples (never of eval data) are written to
``RUN/augment.jsonl``, and a resumed run reads them back instead of asking again.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from onthejob.data.schema import Example
from onthejob.errors import DataError
from onthejob.eval.facts import match_fact
from onthejob.synth.config import AugmentConfig, TeacherConfig
from onthejob.synth.facts import key_facts
from onthejob.synth.prompts import norm as _norm
from onthejob.synth.teacher import Cache, LocalTeacher, Teacher, ask, open_teacher

FILE = "augment.jsonl"  # in a run folder: the paraphrases data.augment mixed in
MAX_GROWTH = 3  # a rewording longer than this many times the original is rambling, not rewording

SHOT_Q = "Can I claim a taxi home after 9 pm from the Leeds office?"
SHOT_A = "Yes. After 9 pm you can claim a taxi home, up to £30 a trip."
# (how the k-th rewording is asked for, the worked example's rewording in that style)
STYLES = (
    ("as a short, casual question", "can I expense a taxi home from Leeds after 9 pm?"),
    ("formally", "Am I permitted to claim the cost of a taxi home from the Leeds office after 9 pm?"),
    ("starting with a different word", "After 9 pm, can I claim a taxi home from the Leeds office?"),
    ("as a colleague would ask it", "Quick one: do we get a taxi home paid if we leave the Leeds office after 9 pm?"),
    ("changing the word order", "Is a taxi home from the Leeds office after 9 pm something I can claim?"),
    ("as a new employee would ask it", "I've just started at the Leeds office. If I leave after 9 pm, can I claim a taxi home?"),
    ("more briefly", "Taxi home from the Leeds office after 9 pm: can I claim it?"),
    ("as a manager asking for their team", "Can my team at the Leeds office claim a taxi home after 9 pm?"),
)
ANSWER_STYLES = (
    ("in other words", "Yes, a taxi home after 9 pm can be claimed, up to £30 a trip."),
    ("starting with a different word", "Taxis home after 9 pm can be claimed, up to £30 a trip."),
    ("more plainly", "Yes. If you leave after 9 pm, you can claim a taxi home. The limit is £30 a trip."),
    ("in a different order", "Up to £30 a trip: that is what you can claim for a taxi home after 9 pm."),
    ("as a friendly colleague would say it", "Yes, you can! Taxis home after 9 pm are covered, up to £30 a trip."),
)
QUESTION_SYSTEM = ("You reword questions for training an assistant. Reply with the reworded question only, "
                   "on one line. Do not answer it.")
ANSWER_SYSTEM = ("You reword answers for training an assistant. Reply with the reworded answer only, on one line. "
                 "Keep every name, number, time and amount exactly as written.")

_LABEL = re.compile(r"^\W*(?:(?:here(?:'s| is)\s+)?(?:the\s+|a\s+|my\s+)?(?:reworded|rephrased|paraphrased|rewritten|new)?\s*"
                    r"(?:question|answer|paraphrase|rewording|rephrasing|version|rewrite|reply)(?:\s*\d+)?\s*\**\s*[:：]\s*)",
                    re.IGNORECASE)
_QUOTES = " \t\"'`*“”‘’«»"
_WORD = re.compile(r"[A-Za-z][\w'&-]*")
_PRONOUNS = {"i", "i'm", "i've", "i'd", "i'll"}


def style(k: int, styles: tuple[tuple[str, str], ...] = STYLES) -> tuple[str, str]:
    """The k-th (0-based) kind of rewording and its worked example: past the list, two combined."""
    n = len(styles)
    how, demo = styles[k % n]
    if k >= n:
        how = f"{how}, and {styles[(k % n + k // n) % n][0]}"
    return how, demo


def question_prompt(question: str, k: int) -> list[dict]:
    how, demo = style(k)
    ask_ = lambda q: f"Reword this question {how}. Use your own words, but keep every name and number.\n\nQuestion: {q}"  # noqa: E731
    return [{"role": "system", "content": QUESTION_SYSTEM},
            {"role": "user", "content": ask_(SHOT_Q)}, {"role": "assistant", "content": demo},
            {"role": "user", "content": ask_(question)}]


def answer_prompt(question: str, answer: str, k: int) -> list[dict]:
    how, demo = style(k, ANSWER_STYLES)
    ask_ = lambda q, a: f"Question: {q}\nAnswer: {a}\n\nReword this answer {how}."  # noqa: E731
    return [{"role": "system", "content": ANSWER_SYSTEM},
            {"role": "user", "content": ask_(SHOT_Q, SHOT_A)}, {"role": "assistant", "content": demo},
            {"role": "user", "content": ask_(question, answer)}]


def clean(reply: str) -> str:
    """The reply's first line that says something, without labels ("Question:"), quotes or markdown;
    a preamble line ending in ":" ("Sure! Here is a reworded question:") is skipped."""
    for line in reply.splitlines():
        text = line.strip()
        while (m := _LABEL.match(text)) and m.end():
            text = text[m.end():]
        text = " ".join(text.strip(_QUOTES).split())
        if text and not text.endswith(":"):
            return text
    return ""


def must_keep(text: str) -> list[str]:
    """What a rewording of ``text`` must still say: its key facts and its names (capitalised words
    that do not open a sentence, "I" aside)."""
    out = key_facts(text)
    for m in _WORD.finditer(text):
        before = text[:m.start()].rstrip(_QUOTES + "([")
        if m.group()[0].isupper() and before and before[-1] not in ".!?:\n" and m.group().casefold() not in _PRONOUNS:
            out.append(m.group())
    return list(dict.fromkeys(out))


def _lost(text: str, facts: list) -> bool:
    return any(match_fact(text, f).matched is None for f in facts)


_COPIES = {_norm(t) for t in (SHOT_Q, SHOT_A, *(d for _, d in STYLES), *(d for _, d in ANSWER_STYLES))}
_SHOT_FACTS = must_keep(f"{SHOT_Q} {SHOT_A}")  # a small teacher carries "Leeds" and "9 pm" into its rewording


def _copied(text: str, original: str) -> bool:
    """The rewording is the worked example, or carries over one of its facts that ``original`` lacks."""
    return _norm(text) in _COPIES or any(match_fact(text, f).matched and not match_fact(original, f).matched for f in _SHOT_FACTS)


def _added(text: str, original: str) -> bool:
    """The rewording states a key fact (a number, a time) that ``original`` does not."""
    return any(not match_fact(original, f).matched for f in key_facts(text))


def _not_a_rewording(text: str, original: str) -> str | None:
    """The checks a reworded question and a reworded answer share, in order."""
    norm = _norm(text)
    if not norm:
        return "empty"
    if _copied(text, original):
        return "copied the example"
    if norm == _norm(original):
        return "same as original"
    return None


def question_drop(text: str, original: str, kept: set[str]) -> str | None:
    """Why the rewording ``text`` of the question ``original`` is dropped, or None to keep it;
    ``kept``: the normalised rewordings of it kept so far."""
    if why := _not_a_rewording(text, original):
        return why
    if _norm(text) in kept:
        return "duplicate"
    if len(text) > MAX_GROWTH * len(original):
        return "too long"
    asks = original.rstrip().endswith("?")
    if (asks and not text.endswith("?")) or (not asks and text.endswith((".", "!"))):
        return "not a question"
    if _lost(text, must_keep(original)):
        return "lost a fact"
    if _added(text, original):
        return "added a fact"
    return None


def answer_drop(text: str, original: str, facts: list) -> str | None:
    """Why the rewording ``text`` of the answer ``original`` is not used (the original answer is
    kept instead), or None; ``facts``: the record's own facts, which must still be found."""
    if why := _not_a_rewording(text, original):
        return why
    if len(text) > MAX_GROWTH * len(original):
        return "too long"
    if original.rstrip().endswith((".", "!", "?")) and not text.endswith((".", "!", "?")):
        return "cut off"
    if _lost(text, must_keep(original) + list(facts)):
        return "lost a fact"
    if _added(text, original):
        return "added a fact"
    return None


@dataclass
class Stats:
    """What became of the rewordings asked for."""

    dropped: Counter = field(default_factory=Counter)  # rewordings of questions left out, by reason
    answer_kept: Counter = field(default_factory=Counter)  # paraphrases that kept the original answer, by why
    answers_reworded: int = 0
    cached: int = 0  # prompts answered from the reply cache


@dataclass
class _Jobs:
    prompts: list[list[dict]] = field(default_factory=list)  # distinct prompts, in order
    question: dict[tuple[int, int], int] = field(default_factory=dict)  # (example, k) -> prompt
    answer: dict[tuple[int, int], int] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)

    def add(self, prompt: list[dict]) -> int:
        key = json.dumps(prompt, sort_keys=True, ensure_ascii=False)
        if key not in self.index:
            self.index[key] = len(self.prompts)
            self.prompts.append(prompt)
        return self.index[key]


def _turns(messages: list[dict]) -> tuple[int | None, int | None]:
    """Indices of the last user message with text, and of the assistant reply after it (None: none)."""
    user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "user"
                 and isinstance(messages[i].get("content"), str) and messages[i]["content"].strip()), None)
    last = messages[-1] if messages else {}
    answer = len(messages) - 1 if (user is not None and len(messages) - 1 > user and last["role"] == "assistant"
                                   and isinstance(last.get("content"), str) and last["content"].strip()
                                   and not last.get("tool_calls")) else None
    return user, answer


def _jobs(examples: list[Example], paraphrases: int, answers: bool) -> _Jobs:
    jobs = _Jobs()
    for i, ex in enumerate(examples):
        user, reply = _turns(ex.messages)
        if user is None:
            continue
        question = ex.messages[user]["content"].strip()
        for k in range(paraphrases):
            jobs.question[i, k] = jobs.add(question_prompt(question, k))
            if answers and reply is not None:
                jobs.answer[i, k] = jobs.add(answer_prompt(question, ex.messages[reply]["content"].strip(), k))
    return jobs


def prompts_for(examples: list[Example], *, paraphrases: int, answers: bool) -> list[list[dict]]:
    """The distinct prompts ``paraphrase_examples`` sends, in order (a progress bar's total)."""
    return _jobs(examples, paraphrases, answers).prompts


def paraphrase_examples(examples: list[Example], *, paraphrases: int, answers: bool, teacher: Teacher,
                        teacher_config: TeacherConfig, cache: Cache, progress: Callable[[int], None] | None = None,
                        keys: Mapping[str, dict] | None = None, stats: Stats | None = None) -> list[dict]:
    """Each example as a record, followed by up to ``paraphrases`` rewordings of it (see the module
    docstring). ``keys``: the other keys of each original's record by ``Example.where`` (``facts``,
    ``source``), kept on it and its rewordings; ``stats`` is filled with what was dropped."""
    stats = stats if stats is not None else Stats()
    jobs = _jobs(examples, paraphrases, answers)
    raw, stats.cached = ask(teacher, teacher_config, jobs.prompts, cache=cache, progress=progress)
    replies = [clean(r) for r in raw]
    out: list[dict] = []
    for i, ex in enumerate(examples):
        extra = (keys or {}).get(ex.where, {})  # an original that is itself a paraphrase keeps saying so
        out.append({**ex.to_record(), **extra})
        user, reply = _turns(ex.messages)
        if user is None:
            continue
        question, kept = ex.messages[user]["content"].strip(), set()
        for k in range(paraphrases):
            text = replies[jobs.question[i, k]]
            why = question_drop(text, question, kept)
            if why:
                stats.dropped[why] += 1
                continue
            kept.add(_norm(text))
            messages = [dict(m) for m in ex.messages]
            messages[user]["content"] = text
            if (i, k) in jobs.answer:
                answer = replies[jobs.answer[i, k]]
                why = answer_drop(answer, messages[reply]["content"].strip(), _record_facts(extra))
                if why:
                    stats.answer_kept[why] += 1
                else:
                    messages[reply]["content"] = answer
                    stats.answers_reworded += 1
            out.append({**ex.to_record(), "messages": messages, **extra, "paraphrase_of": ex.where, "paraphrase": k + 1})
    return out


def _record_facts(extra: dict) -> list:
    """A record's ``facts`` (strings, or lists of alternatives), whatever else the key holds."""
    facts = extra.get("facts")
    return [f for f in facts if isinstance(f, str) or (isinstance(f, list) and f and all(isinstance(x, str) for x in f))] \
        if isinstance(facts, list) else []


# ------------------------------------------------------------------------------------------------
# ojt data augment


def _read(path: str) -> tuple[list[Example], dict[str, dict]]:
    """The file's examples, and the other keys of its chat records by ``Example.where``."""
    from onthejob.data.files import json_records
    from onthejob.data.readers import _record_keys, read_examples

    result = read_examples(path)
    if result.errors:
        first = "; ".join(str(p) for p in result.errors[:3])
        raise DataError(f"{path} has {len(result.errors)} error(s), nothing written: {first}",
                        fix=f"see them all with: ojt data check {path}")
    if not result.examples:
        raise DataError(f"{path}: no examples found; nothing written", fix="give a file with at least one example")
    keys: dict[str, dict] = {}
    if result.format == "chat":
        for rec in json_records(Path(path), path, _record_keys()):
            if rec.ok and isinstance(rec.value, dict):
                extra = {k: v for k, v in rec.value.items() if k not in ("messages", "tools")}
                if extra:
                    keys[f"{path}:{rec.line}" if rec.line else path] = extra
    return result.examples, keys


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="prompt", file=sys.stderr, dynamic_ncols=True, disable=None)


def summary(stats: Stats) -> str:
    """``58 dropped: 30 same as original, ...``, and what became of the answers."""
    n = sum(stats.dropped.values())
    text = f"{n} dropped" + (": " + ", ".join(f"{c} {why}" for why, c in stats.dropped.most_common()) if n else "")
    if stats.answers_reworded or stats.answer_kept:
        kept = sum(stats.answer_kept.values())
        text += f"; {stats.answers_reworded} answers reworded, {kept} kept the original wording"
        if kept:
            text += " (" + ", ".join(f"{c} {why}" for why, c in stats.answer_kept.most_common()) + ")"
    return text


def run(config: AugmentConfig) -> str:
    from onthejob.data.outputs import check_outputs
    from onthejob.fsutil import write_jsonl

    check_outputs([config.file], [("--out", config.out)])
    started = time.monotonic()
    examples, keys = _read(config.file)
    teacher = open_teacher(config.teacher)
    cache = Cache(config.cache)
    prompts = prompts_for(examples, paraphrases=config.paraphrases, answers=config.answers)
    bar = _progress(len(prompts), "augment")
    stats = Stats()
    try:
        records = paraphrase_examples(examples, paraphrases=config.paraphrases, answers=config.answers, teacher=teacher,
                                      teacher_config=config.teacher, cache=cache, progress=bar.update, keys=keys, stats=stats)
    finally:
        bar.close()
        cache.close()
    write_jsonl(config.out, records)
    made = sum("paraphrase_of" in r for r in records)
    return (f"wrote {len(examples)} originals + {made} paraphrases to {config.out} ({summary(stats)}); "
            f"{len(prompts)} prompts ({stats.cached} from the cache) in {time.monotonic() - started:.0f} s")


# ------------------------------------------------------------------------------------------------
# data.augment in ojt train


class RunAugment:
    """``data.augment`` for ``train/data.py::prepare``: called with one dataset's training examples,
    returns their paraphrase records. The teacher is the run's base model (before any adapter, in
    the Engine it already is in, so not loaded twice) unless ``settings.teacher`` names another
    model or an endpoint. A resumed run reads what the first start wrote to RUN/augment.jsonl."""

    def __init__(self, settings, model_name: str, base, tokenizer, *, run_dir: Path | None = None, say=print):
        from onthejob.data.files import json_records

        self.settings, self.model_name, self.base, self.tokenizer, self.say = settings, model_name, base, tokenizer, say
        saved = run_dir / FILE if run_dir is not None else None
        self.saved = ([r.value for r in json_records(saved, str(saved)) if r.ok and isinstance(r.value, dict)]
                      if saved is not None and saved.is_file() else None)
        self._teacher: tuple[Teacher, TeacherConfig] | None = None

    def __call__(self, examples: list[Example]) -> list[dict]:
        if self.saved is not None:
            originals = {e.where for e in examples}
            return [r for r in self.saved if r.get("paraphrase_of") in originals]
        teacher, teacher_config = self.teacher()
        n = self.settings.paraphrases
        self.say(f"augment: the teacher rewords {len(examples)} training questions {n} ways ...")
        cache, stats = Cache(self.settings.cache), Stats()
        bar = _progress(len(prompts_for(examples, paraphrases=n, answers=self.settings.answers)), "augment")
        try:
            records = paraphrase_examples(examples, paraphrases=n, answers=self.settings.answers, teacher=teacher,
                                          teacher_config=teacher_config, cache=cache, progress=bar.update, stats=stats)
        finally:
            bar.close()
            cache.close()
        made = [r for r in records if "paraphrase_of" in r]
        self.say(f"augment: {len(made)} paraphrases mixed in ({summary(stats)})")
        return made

    def teacher(self) -> tuple[Teacher, TeacherConfig]:
        """The teacher and its settings; a teacher with neither url nor another model is the base."""
        if self._teacher is None:
            given = self.settings.teacher or TeacherConfig()
            if given.url is None and given.model in (None, self.model_name):
                from onthejob.generate.engine import Engine

                given = given.model_copy(update={"model": self.model_name})
                self._teacher = LocalTeacher(given, engine=Engine(self.base, self.tokenizer)), given
            else:
                self._teacher = open_teacher(given), given
        return self._teacher


def save(run_dir: Path, records: list[dict]) -> None:
    """Write a run's paraphrases into its folder (once it is a run: after run.json)."""
    from onthejob.fsutil import write_jsonl

    write_jsonl(run_dir / FILE, records)
