"""Validate a data file and measure it, before any training time is spent on it.

    ojt data check data.jsonl --model HuggingFaceTB/SmolLM2-135M-Instruct --max-seq-len 2048

Every error category of the OpenAI cookbook's chat fine-tuning data check is reported under the
cookbook's own code (the structural ones come from ``data/readers.py``); tool calls and the
``tool`` role are valid here, not flagged. Beyond the cookbook: empty assistant turns, examples
too long for ``max_seq_len``, examples with nothing left to learn after masking, and two warnings:
duplicates (trainable, but they weigh double and leak into eval) and ``tools_inlined`` (the chat
template has no tool support, so ``data/template.py`` writes tool use into the text).
All problems come out in one run, each naming file:line, message index and a fix.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onthejob.data.readers import read_examples
from onthejob.data.schema import Example, HasProblems, Problem, ReadResult
from onthejob.data.split import content_key
from onthejob.errors import DataError

# Training throughput assumed when none is given: measured with `ojt train` (LoRA r16, packed
# rows of 512, bf16 autocast) on SmolLM2-135M on 2 CPU cores with AVX512-BF16: ~300 trained
# tokens/s (~195 in fp32). 250 is a slightly low-side guess for such a machine; bigger models slow
# down in proportion to their parameter count. `ojt plan` will measure instead of assuming.
REFERENCE_TOKENS_PER_SECOND = 250.0
REFERENCE_PARAMS = 135e6
MAX_LISTED = 10  # per problem code in the human report; --json lists all


@dataclass
class CheckReport(HasProblems):
    """What ``check_file`` found: the examples read, every problem, and statistics."""

    source: str
    format: str
    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_file(
    path: str | Path,
    *,
    tokenizer: Any = None,
    max_seq_len: int | None = None,
    format: str | None = None,  # noqa: A002 - matches the --format flag
    mapping: dict[str, str] | None = None,
    system: str | None = None,
    train_on: str = "all",
    tokens_per_second: float | None = None,
    n_params: int | None = None,
) -> CheckReport:
    """Read and check ``path``; token statistics and length checks need a ``tokenizer``."""
    result = read_examples(path, format=format, mapping=mapping, system=system)
    problems, counts = _check(result, tokenizer, max_seq_len, train_on)
    stats = _stats(result.examples, counts, tokens_per_second or estimate_tokens_per_second(n_params))
    return CheckReport(str(path), result.format, result.examples, problems, stats)


def check_examples(
    result: ReadResult, *, tokenizer: Any = None, max_seq_len: int | None = None, train_on: str = "all"
) -> list[Problem]:
    """The reader's problems plus every check on its examples, in file order."""
    return _check(result, tokenizer, max_seq_len, train_on)[0]


def estimate_tokens_per_second(n_params: int | None = None) -> float:
    """Assumed CPU training throughput; see REFERENCE_TOKENS_PER_SECOND."""
    if not n_params:
        return REFERENCE_TOKENS_PER_SECOND
    return REFERENCE_TOKENS_PER_SECOND * REFERENCE_PARAMS / n_params


# ------------------------------------------------------------------------------------------------
# Checks


def _check(
    result: ReadResult, tokenizer: Any, max_seq_len: int | None, train_on: str
) -> tuple[list[Problem], list[tuple[int, int]]]:
    """Problems in file order, and (tokens, supervised tokens) per example when tokenized."""
    if train_on not in ("all", "last", "sequence"):
        raise DataError(f"train_on is {train_on!r}", fix="use all, last or sequence")
    problems = list(result.problems)
    counts: list[tuple[int, int]] = []
    for ex in result.examples:
        found = _example_problems(ex)
        problems += found
        has_assistant = all(p.code != "example_missing_assistant_message" for p in found)
        if tokenizer is None:
            if has_assistant and not _supervised_by_weights(ex, train_on):
                problems.append(_no_supervised(ex))
            continue
        tokenized = _tokenize(ex, tokenizer, train_on, problems)
        if tokenized is None:
            continue
        counts.append((len(tokenized.input_ids), tokenized.n_supervised))
        if has_assistant and tokenized.n_supervised == 0:
            problems.append(_no_supervised(ex))
        elif max_seq_len and len(tokenized.input_ids) > max_seq_len:
            problems.append(_too_long(ex, tokenized.labels, max_seq_len))
    problems += _duplicates(result.examples)
    if tokenizer is not None:
        problems += _tools_inlined(result.examples, tokenizer)
    problems.sort(key=lambda p: (p.source, p.line, -1 if p.message_index is None else p.message_index))
    return problems, counts


def _problem(
    ex: Example, severity: str, code: str, message: str, fix: str, index: int | None = None
) -> Problem:
    return Problem(severity, code, message, fix, ex.source, ex.line, index)  # type: ignore[arg-type]


def _example_problems(ex: Example) -> list[Problem]:
    """Checks on one well-formed example: which turns it has, and empty texts."""
    roles = [m["role"] for m in ex.messages]
    found = []
    for i, m in enumerate(ex.messages):
        empty = not (m.get("content") or "").strip()
        if m["role"] == "assistant" and empty and not m.get("tool_calls"):
            found.append(_problem(ex, "error", "empty_assistant_content", "assistant message has no text",
                                  "write the reply, or delete the message", i))
        elif m["role"] in ("system", "user") and empty:
            found.append(_problem(ex, "error", "missing_content", f"{m['role']} message has no text",
                                  "write its text, or delete the message", i))
    if "assistant" not in roles:
        found.append(_problem(ex, "error", "example_missing_assistant_message",
                              "example has no assistant message, so there is nothing to learn",
                              "add the reply the model should give"))
    if "system" not in roles:
        found.append(_problem(ex, "warning", "missing_system_message", "example has no system message",
                              "add one, or pass --system to give every example the same one"))
    if "user" not in roles:
        found.append(_problem(ex, "warning", "missing_user_message", "example has no user message",
                              "add the user turn the reply answers"))
    if roles[-1] != "assistant":
        found.append(_problem(ex, "warning", "not_ending_with_assistant",
                              f"example ends with a {roles[-1]} message, which is never learned from",
                              "end it with the assistant's reply, or drop the trailing turns",
                              len(roles) - 1))
    return found


def _supervised_by_weights(ex: Example, train_on: str) -> bool:
    """Without a tokenizer: does any assistant turn survive masking by weight?"""
    if train_on == "sequence":
        return True
    assistant = [m for m in ex.messages if m["role"] == "assistant"]
    if train_on == "last":
        assistant = assistant[-1:]
    return any(m.get("weight", 1) != 0 for m in assistant)


def _no_supervised(ex: Example) -> Problem:
    return _problem(ex, "error", "no_supervised_tokens",
                    "no token is left to learn from after masking (every assistant turn has weight 0, "
                    "or --train-on last picks a weight-0 turn)",
                    "set weight 1 on the assistant turns to learn, or change --train-on")


def _tokenize(ex: Example, tokenizer: Any, train_on: str, problems: list[Problem]) -> Any:
    from onthejob.data.template import tokenize_example  # lazy: pulls in transformers

    try:
        return tokenize_example(ex, tokenizer, train_on=train_on)
    except DataError as e:
        message = e.message.removeprefix(f"{ex.where}: ")  # the Problem names the place itself
        fix = e.fix or "use roles and tool calls this model's chat template supports"
        problems.append(_problem(ex, "error", "template_error", message, fix))
        return None


def _too_long(ex: Example, labels: list[int], max_seq_len: int) -> Problem:
    # Training keeps the first max_seq_len tokens (data/pack.py truncate). If some supervised tokens
    # survive the cut the example still teaches something, so that is a warning; if every one is
    # cut, the example is pure cost with nothing to learn, so that is an error.
    n = len(labels)
    total = sum(1 for t in labels if t != -100)
    kept = sum(1 for t in labels[:max_seq_len] if t != -100)
    message = (f"{n} tokens, {n - max_seq_len} over max_seq_len {max_seq_len}; "
               f"{total - kept} of {total} supervised tokens would be cut")
    fix = "shorten or split the example, or raise max_seq_len"
    return _problem(ex, "error" if kept == 0 else "warning", "too_long", message, fix)


def _duplicates(examples: list[Example]) -> list[Problem]:
    exact: dict[str, Example] = {}
    loose: dict[str, Example] = {}
    found = []
    for ex in examples:
        e_key, l_key = content_key(ex, exact=True), content_key(ex)
        first = exact.get(e_key) or loose.get(l_key)
        if first is not None:
            how = "exact duplicate" if e_key in exact else "duplicate (ignoring case and whitespace)"
            found.append(_problem(ex, "warning", "duplicate", f"{how} of {first.where}",
                                  "delete one of them; duplicates weigh double and leak into eval"))
        exact.setdefault(e_key, ex)
        loose.setdefault(l_key, ex)
    return found


def _tools_inlined(examples: list[Example], tokenizer: Any) -> list[Problem]:
    """One warning per file that uses tools when the chat template cannot render them."""
    first: dict[str, Example] = {}
    for ex in examples:
        if ex.tools or any(m.get("tool_calls") for m in ex.messages):
            first.setdefault(ex.source, ex)
    if not first:
        return []
    from onthejob.data.template import supports_tools  # lazy: pulls in transformers

    if supports_tools(tokenizer):
        return []
    message = ("the chat template has no tool support, so tool calls are written into the text as "
               "<tool_call> JSON (and the tools into the system message as a <tools> list)")
    fix = "nothing to do to train on them; for a native tool format, use a model whose template has one"
    return [Problem("warning", "tools_inlined", message, fix, source, 0) for source in first]


# ------------------------------------------------------------------------------------------------
# Statistics and rendering


def _summary(values: list[int]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]  # nearest rank
    return {"min": ordered[0], "median": statistics.median(ordered), "p90": p90, "max": ordered[-1]}


def _stats(
    examples: list[Example], counts: list[tuple[int, int]], tokens_per_second: float
) -> dict[str, Any]:
    stats: dict[str, Any] = {"examples": len(examples)}
    if not examples:
        return stats
    stats["messages_per_example"] = _summary([len(ex.messages) for ex in examples])
    if counts:
        tokens, supervised = [c[0] for c in counts], [c[1] for c in counts]
        stats["tokens_per_example"] = _summary(tokens)
        stats["supervised_tokens_per_example"] = _summary(supervised)
        stats["tokens_total"] = sum(tokens)
        stats["supervised_tokens_total"] = sum(supervised)
        stats["tokens_per_second"] = tokens_per_second
        stats["seconds_per_epoch"] = sum(tokens) / tokens_per_second
    return stats


def report_to_json(report: CheckReport) -> dict[str, Any]:
    return {
        "file": report.source,
        "format": report.format,
        "ok": report.ok,
        "errors": len(report.errors),
        "warnings": len(report.warnings),
        "problems": [p.to_dict() for p in report.problems],
        "stats": report.stats,
    }


def _paint(text: str, code: str, color: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if color else text


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def format_report(report: CheckReport, color: bool = False) -> str:
    """Problems grouped by severity and code (at most MAX_LISTED each), then a statistics table."""
    lines = [f"{report.source}: {report.format}, {len(report.examples)} examples, "
             f"{len(report.errors)} errors, {len(report.warnings)} warnings"]
    for severity, paint in (("error", "31"), ("warning", "33")):
        by_code: dict[str, list[Problem]] = {}
        for p in report.problems:
            if p.severity == severity:
                by_code.setdefault(p.code, []).append(p)
        for code, group in by_code.items():
            lines.append(_paint(f"{severity}: {code} ({len(group)})", paint, color))
            for p in group[:MAX_LISTED]:
                where = f"{p.source}:{p.line}" if p.line else p.source
                where += f" message {p.message_index}" if p.message_index is not None else ""
                lines.append(f"  {where}: {p.message} — {p.fix}")
            if len(group) > MAX_LISTED:
                lines.append(f"  ... and {len(group) - MAX_LISTED} more (--json lists all)")
    lines += _stats_table(report.stats)
    return "\n".join(lines)


def _stats_table(stats: dict[str, Any]) -> list[str]:
    if not stats.get("examples"):
        return []
    rows = [("", "min", "median", "p90", "max")]
    for key in ("messages_per_example", "tokens_per_example", "supervised_tokens_per_example"):
        if key in stats:
            s = stats[key]
            rows.append((key.replace("_", " "), *(f"{s[k]:g}" for k in ("min", "median", "p90", "max"))))
    out = ["", "statistics", f"  examples: {stats['examples']}"]
    out += ["  " + f"{r[0]:<31}" + "".join(f"{c:>9}" for c in r[1:]) for r in rows]
    if "tokens_total" in stats:
        out.append(f"  total tokens: {stats['tokens_total']}, supervised: {stats['supervised_tokens_total']}")
        out.append(f"  estimated time per epoch: {_duration(stats['seconds_per_epoch'])} "
                   f"(at an assumed {stats['tokens_per_second']:g} tokens/s)")
    else:
        out.append("  no token statistics: no tokenizer was given")
    return out
