"""The rows being decoded together: the one decode loop, for a file of prompts and for the server.

    batch = Batch(engine, max_rows=32)
    batch.add(engine.request(prompt_ids, SamplingParams()))
    while batch.running or batch.waiting:
        for request in batch.step():      # the rows that advanced, each with its new text
            print(request.ready(), end="")

``step()`` runs one engine step for the running rows, drops the ones that finished or were
cancelled, and lets waiting rows join: they are prefilled together and stacked onto the running
rows (``DecodeState.merge``), so rows of any length and any adapter share every forward pass.

When do waiting rows join? With ``refill=False`` only when no row is running: a batch starts,
runs until its last row ends, then the next one starts (``Engine.generate_ids``: each batch is
prefilled once and its rows see exactly the tensors they would see in a static batch). With
``refill=True`` (the server) they join a running batch too, but in groups, because every join
costs a prefill and a copy of the cache: once a quarter of the batch is waiting, or the first
of them has waited ``JOIN_WAIT`` steps. A cache that cannot be merged (sliding-window layers)
makes new rows wait until the batch is empty. A long prompt joining a running batch is prefilled
in parts of ``JOIN_TOKENS``, one part per step (``Engine.warm``), so the running rows are not held
up for the whole of it (chunked prefill); it joins when the rest fits in one part.

Not thread-safe: one thread adds and steps; ``Request.cancelled`` may be set from anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch

from onthejob.generate.cache import DecodeState, mergeable
from onthejob.generate.prefill import prefilled
from onthejob.generate.request import Request


class Batch:
    """Rows that join and leave between steps; see the module docstring. ``engine`` is an
    ``Engine`` (its ``prefill`` and ``step``), replaceable between steps (the server does, when
    its first adapter wraps the model)."""

    JOIN_WAIT = 4  # steps a waiting row may wait for others before it joins alone
    JOIN_TOKENS = 512  # prompt tokens prefilled per step while rows are running

    def __init__(self, engine, *, max_rows: int = 32, refill: bool = True):
        self.engine, self.max_rows, self.refill = engine, max_rows, refill
        self.running: list[Request] = []
        self.waiting: list[Request] = []
        self._state: DecodeState | None = None
        self._waited = 0  # steps the oldest waiting row has waited

    def add(self, request: Request) -> Request:
        self.waiting.append(request)
        return request

    def step(self) -> list[Request]:
        """Advance every running row one token and admit waiting rows; returns the rows that
        advanced (a finished row is in it once, then gone)."""
        self.prune()
        stepped: list[Request] = []
        if self.running:
            self._state = self.engine.step(self.running, self._state)
            stepped += self.running
        room = self.max_rows - len(self.running)
        if self.waiting and room > 0 and self._time_to_join():
            joining = self._parts(self.waiting[:room])
            self.waiting = [r for r in self.waiting if not any(r is j for j in joining)]
            if joining:
                self._join(joining)
                stepped += joining
        self._keep([r.finish is None for r in self.running])
        return stepped

    def prune(self) -> None:
        """Drop cancelled rows now (``step`` does it first anyway)."""
        self.waiting = [r for r in self.waiting if not r.cancelled]
        self._keep([not r.cancelled for r in self.running])

    def _time_to_join(self) -> bool:
        if not self.running:
            return True
        if not self.refill or not mergeable(self._state.cache):
            return False
        self._waited += 1
        if len(self.waiting) * 4 >= len(self.running) or self._waited > self.JOIN_WAIT:
            self._waited = 0
            return True
        return False

    def _parts(self, candidates: list[Request]) -> list[Request]:
        """The candidates that join now. While rows are running, a prompt with more than
        ``JOIN_TOKENS`` left to prefill gets one part prefilled instead (the first such prompt;
        the others wait their turn)."""
        if not self.running or not getattr(self.engine, "packed", False):
            return candidates
        long = [r for r in candidates if len(r.prompt) - prefilled(r) > self.JOIN_TOKENS]
        if long:
            self.engine.warm(long[0], self.JOIN_TOKENS)
        return [r for r in candidates if not any(r is x for x in long)]

    def _join(self, joining: list[Request]) -> None:
        started = time.perf_counter()
        for r in joining:
            r.started = started  # a row's time counts from the start of its batch
        state = self.engine.prefill(joining)
        with torch.inference_mode():  # the caches are inference tensors: no autograd bookkeeping
            self._state = self._state.merge(state) if self.running else state
        self.running = self.running + joining

    def _keep(self, keep: list[bool]) -> None:
        if all(keep):
            return
        self.running = [r for r, k in zip(self.running, keep) if k]
        if not self.running:
            self._state = None
            return
        # Columns that are padding for every remaining row cost compute on each step; a batch
        # that is never merged into keeps them, so its rows see the tensors of a static batch.
        with torch.inference_mode():
            self._state = self._state.select([i for i, k in enumerate(keep) if k], cut_padding=self.refill)


def stream_request(batch, request: Request) -> Iterator[str]:
    """Step ``batch`` (holding ``request`` alone) until the request ends, yielding its new text.
    Text that could be the start of a stop string is held back until it is known not to be."""
    batch.add(request)
    while request.finish is None:
        batch.step()
        delta = request.ready()
        if delta:
            yield delta
