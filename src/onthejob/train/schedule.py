"""Units and schedules. A *step* is one optimizer update; a *micro-step* one forward/backward.

Rows are dealt deterministically: epoch e visits the rows in a permutation seeded by (seed, e);
step k of the epoch takes the next ``micro_batch_size x grad_accum x world_size`` rows, process r
getting micro-batch m's rows at slot ``m * world_size + r``. So one process with grad_accum 2 sees
exactly the rows that two processes with grad_accum 1 see together, and a resumed run continues
from the same place without saving any sampler state but the step.
"""

from __future__ import annotations

import math
import random
from functools import lru_cache


def lr_lambda(*, warmup: int, total: int, schedule: str, min_ratio: float):
    """Multiplier of the peak learning rate at a given step: linear warm-up, then decay."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
        return min_ratio + (1 - min_ratio) * decay

    return factor


class Plan:
    def __init__(self, n_rows: int, *, micro_batch: int, grad_accum: int, world: int, seed: int):
        self.n_rows, self.micro_batch, self.grad_accum, self.world, self.seed = n_rows, micro_batch, grad_accum, world, seed
        self.rows_per_step = micro_batch * grad_accum * world
        self.steps_per_epoch = max(1, math.ceil(n_rows / self.rows_per_step))

    def total_steps(self, epochs: float, max_steps: int | None) -> int:
        return max_steps or max(1, math.ceil(epochs * self.steps_per_epoch))

    @lru_cache(maxsize=4)
    def _order(self, epoch: int) -> list[int]:
        order = list(range(self.n_rows))
        random.Random(f"{self.seed}-{epoch}").shuffle(order)
        return order

    def micro_batches(self, step: int, rank: int) -> list[list[int]]:
        """Row indices of each micro-batch this process runs at ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = self._order(epoch)
        base = k * self.rows_per_step
        out = []
        for m in range(self.grad_accum):
            start = base + (m * self.world + rank) * self.micro_batch
            # The last step of an epoch wraps to its first rows, so every step is full size.
            out.append([order[(start + b) % self.n_rows] for b in range(self.micro_batch)])
        return out

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch
