"""Show an example as the model sees it, marking the tokens it will learn from.

``ojt data preview`` prints this for a few examples, so a user can check that the assistant
replies (and the token that ends them) are trained and the prompt is not, before spending hours.
"""

from __future__ import annotations

from onthejob.data.schema import Example
from onthejob.data.template import IGNORE_INDEX, Rendered, render_example

GREEN, BOLD_GREEN, DIM, CYAN, RESET = "\x1b[32m", "\x1b[1;32m", "\x1b[2m", "\x1b[36m", "\x1b[0m"
OPEN, CLOSE = "[[", "]]"  # plain-text markers around each supervised span
NEWLINE = "↵\n"  # newlines stay visible, so one can tell whether a newline is trained


def render_preview(example: Example, tokenizer, *, train_on: str = "all", color: bool) -> str:
    """The chat-templated text of example with supervised tokens marked, a legend and a summary."""
    rendered = render_example(example, tokenizer, train_on=train_on)
    runs = _runs(rendered, tokenizer)
    if color:
        body = "".join(_paint(text, _STYLES[kind]) for kind, text in runs)
    else:
        body = "".join(f"{OPEN}{text}{CLOSE}" if kind[0] else text for kind, text in _merge_supervised(runs))
        body = body.replace("\n", NEWLINE)
    return "\n".join([_legend(color), body.rstrip("\n"), _summary(rendered.tokenized)])


def token_runs(example: Example, tokenizer, *, train_on: str = "all") -> dict:
    """The same rendering as data: ``runs`` of ``{"text", "supervised", "special"}`` in order,
    with token counts, for a page to colour (the studio's mask preview)."""
    rendered = render_example(example, tokenizer, train_on=train_on)
    runs = [{"text": text, "supervised": kind[0], "special": kind[1]} for kind, text in _runs(rendered, tokenizer) if text]
    return {"runs": runs, "tokens": len(rendered.tokenized.input_ids), "supervised": rendered.tokenized.n_supervised}


# (supervised, special) -> ANSI style
_STYLES = {(True, False): GREEN, (True, True): BOLD_GREEN, (False, False): DIM, (False, True): CYAN}


def _runs(rendered: Rendered, tokenizer) -> list[tuple[tuple[bool, bool], str]]:
    """Split the text into runs of tokens of one kind: (supervised, special token)."""
    control = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    tokenized = rendered.tokenized
    runs: list[tuple[tuple[bool, bool], str]] = []
    cursor = 0  # chars of rendered.text already emitted
    for tid, label, (_start, end) in zip(tokenized.input_ids, tokenized.labels, rendered.offsets):
        # Byte-level BPE gives the pieces of one char the same offsets: the char goes with the first.
        text = rendered.text[cursor:end] if end > cursor else ""
        cursor = max(cursor, end)
        kind = (label != IGNORE_INDEX, tid in control)
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1] + text)
        else:
            runs.append((kind, text))
    if cursor < len(rendered.text):
        runs.append(((False, False), rendered.text[cursor:]))
    return runs


def _merge_supervised(runs):
    """Plain mode only tells trained from not: merge runs that agree on that."""
    merged: list[tuple[tuple[bool, bool], str]] = []
    for kind, text in runs:
        if merged and merged[-1][0][0] == kind[0]:
            merged[-1] = (merged[-1][0], merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


def _paint(text: str, style: str) -> str:
    # Style each line on its own so a style never bleeds into the next line of the terminal.
    parts = text.split("\n")
    segments = [p + "↵" for p in parts[:-1]] + [parts[-1]]
    return "\n".join(f"{style}{seg}{RESET}" if seg else "" for seg in segments)


def _legend(color: bool) -> str:
    if color:
        return (f"legend: {GREEN}trained on{RESET}  {DIM}context only{RESET}  "
                f"{CYAN}special token{RESET} (bold when trained)  ↵ = newline")
    return f"legend: {OPEN} ... {CLOSE} = trained on, everything else is context only; ↵ = newline"


def _summary(tokenized) -> str:
    total, supervised = len(tokenized.input_ids), tokenized.n_supervised
    share = 100 * supervised / total if total else 0.0
    return f"{total} tokens, {supervised} supervised ({share:.0f}%)"
