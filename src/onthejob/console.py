"""What the user sees on the terminal besides a command's own output: one ``say`` for progress
and notes (on stderr, so stdout stays the command's result), colour only where it helps, and
one way to write a size in bytes."""

from __future__ import annotations

import os
import sys


def say(message: str) -> None:
    """A progress line or note for the person at the terminal (stderr, flushed at once)."""
    print(message, file=sys.stderr, flush=True)


def use_color(stream) -> bool:
    """Colour on a terminal, unless NO_COLOR is set or the terminal is dumb."""
    return stream.isatty() and os.environ.get("NO_COLOR") is None and os.environ.get("TERM") != "dumb"


def human_bytes(n: float | None) -> str:
    """``1536`` -> ``"1.5 KB"``; None (a size nobody could measure) -> ``"?"``."""
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
