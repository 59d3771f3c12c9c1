"""Templating speed: ``tokenize_example`` (tokens and the per-token label mask, derived by
rendering the chat template) against plain ``apply_chat_template`` (tokens only, no mask).

    python benchmarks/template_speed.py              # 500 support-ticket-sized conversations, 3 reps

The mask costs extra renders of the template; this prints how much, as examples/s of each side
and their ratio. Not a test: the numbers depend on the machine. (Until 2026-12 this was a timing
assert inside tests/data/test_template.py; tests assert behaviour, never speed.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from onthejob.data.schema import Example
from onthejob.data.template import tokenize_example

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' tiny tokenizer
from tests.tiny import tiny_tokenizer  # noqa: E402


def conversation() -> list[dict]:
    return [{"role": "user", "content": "my printer is broken " * 20},
            {"role": "assistant", "content": "turn it off and on " * 20},
            {"role": "user", "content": "thanks"}, {"role": "assistant", "content": "welcome"}]


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    tok, messages = tiny_tokenizer("chatml"), conversation()
    example = Example(messages)
    ours, plain = [], []
    for _ in range(args.reps):  # alternating, so a busy moment hits both sides
        ours.append(timed(lambda: tokenize_example(example, tok), args.examples))
        plain.append(timed(lambda: tok.apply_chat_template(messages, tokenize=True), args.examples))
    a, b = statistics.median(ours), statistics.median(plain)
    print(f"{'side':<32} {'examples/s':>10}")
    print(f"{'tokenize_example (with mask)':<32} {a:>10.0f}")
    print(f"{'apply_chat_template (no mask)':<32} {b:>10.0f}")
    print(f"ratio tokenize_example / apply_chat_template: {a / b:.2f}x")


if __name__ == "__main__":
    main()
