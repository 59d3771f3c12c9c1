"""One row of generation: its prompt, sampling settings and everything it has produced so far.

A ``Request`` is what the engine decodes and what a caller reads back: text as it grows (with
stop strings cut and never streamed), the finish reason, token counts, and a ``Completion`` at
the end. The engine's batches are lists of requests; the server's continuous batching adds and
drops them between steps (``generate/batch.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch

from onthejob.generate.sampling import SamplingParams

FinishReason = Literal["stop", "length"]
BASE = "__base__"  # PEFT's adapter name for "no adapter" in a mixed-adapter batch


@dataclass
class Completion:
    """One generated answer."""

    text: str  # decoded without special tokens, cut before a stop string
    token_ids: list[int]  # generated ids, without the end-of-turn token
    finish_reason: FinishReason  # "stop": end of turn or stop string; "length": max_new_tokens
    prompt_tokens: int
    completion_tokens: int  # tokens the model generated, the end-of-turn token included
    seconds: float  # from the start of its batch until this row finished


class Request:
    """One prompt being completed. ``adapter``: None runs the model as loaded; with a PEFT model
    serving several adapters, the adapter's name (``BASE`` for none)."""

    def __init__(self, prompt: list[int], params: SamplingParams, *, tokenizer, stop_ids: set[int],
                 adapter: str | None = None, device: torch.device | str = "cpu", constraint=None):
        if not prompt:
            raise ValueError("an empty prompt cannot be completed")
        self.prompt, self.params, self.adapter, self.stop_ids = prompt, params, adapter, stop_ids
        self.generator = None if params.seed is None else torch.Generator(device=device).manual_seed(params.seed)
        self.detok = Detokenizer(tokenizer)
        self.prompt_tokens = len(prompt)
        self.started = time.perf_counter()
        self.text = ""  # decoded so far; cut before a stop string once one appears
        self.sent = 0  # characters of text already handed out by ready()
        self.generated = 0  # tokens generated, the end-of-turn token included
        self.finish: FinishReason | None = None
        self.seconds = 0.0
        self.cancelled = False  # set from any thread; the batch drops the row at its next step
        self.kv = None  # keys and values of the prompt's beginning prefilled ahead (Engine.warm)
        self.share = None  # tokens of the prompt worth keeping in the prefix cache; None = all
        self.constraint = constraint  # a generate/constrain.py Constraint: the grammar the text must follow

    def add(self, token: int) -> None:
        """Take the next generated token: grow the text, finish on end of turn, a stop string or
        the length limit."""
        params = self.params
        self.generated += 1
        if self.constraint is not None:
            self.constraint.take(token)
        # The end-of-turn token is neither text nor in token_ids (unless eos is ignored).
        if token in self.stop_ids and not params.ignore_eos:
            self._end("stop", self.detok.flush())
            return
        delta = self.detok.push(token)
        at_limit = self.generated >= params.max_new_tokens
        if at_limit:
            delta += self.detok.flush()
        if delta and params.stop:
            # Search only where a stop string could newly appear: it may straddle the old end.
            start = max(0, len(self.text) - max(map(len, params.stop)) + 1)
            self.text += delta
            hits = [i for i in (self.text.find(s, start) for s in params.stop) if i >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self._end("stop", "")
                return
        else:
            self.text += delta
        if at_limit:
            self._end("length", "")

    def _end(self, reason: FinishReason, tail: str) -> None:
        self.text += tail
        self.finish = reason
        self.seconds = time.perf_counter() - self.started

    def ready(self) -> str:
        """Text not yet handed out, minus a tail that may be the start of a stop string."""
        end = len(self.text)
        if self.finish is None:
            end -= _stop_prefix_len(self.text, self.params.stop)
        delta, self.sent = self.text[self.sent : end], max(self.sent, end)
        return delta

    def completion(self) -> Completion:
        return Completion(
            text=self.text, token_ids=list(self.detok.ids), finish_reason=self.finish or "length",
            prompt_tokens=self.prompt_tokens, completion_tokens=self.generated, seconds=self.seconds,
        )


class Detokenizer:
    """Turns a growing list of ids into text deltas without splitting a multi-byte character.

    Each step decodes a short window (from the previous delta's first token) instead of all the
    text, and holds a delta back while it ends in U+FFFD, the mark of an incomplete UTF-8 byte
    sequence (the method of TGI and vLLM). Starting the window a few tokens back keeps tokenizers
    that drop a word's leading space at the start of a decode (SentencePiece) correct.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # window start
        self.read = 0  # ids before this are already in the text

    def push(self, token: int) -> str:
        self.ids.append(token)
        return self._delta(final=False)

    def flush(self) -> str:
        """Whatever is held back, even an incomplete character (generation has ended)."""
        return self._delta(final=True)

    def _delta(self, final: bool) -> str:
        before = self._decode(self.ids[self.prefix : self.read])
        now = self._decode(self.ids[self.prefix :])
        if len(now) > len(before) and (final or not now.endswith("\ufffd")):
            self.prefix, self.read = self.read, len(self.ids)
            return now[len(before) :]
        return ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True) if ids else ""


def _stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest end of ``text`` that begins some stop string."""
    best = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:k]):
                best = k
                break
    return best
