"""Confidence intervals for eval means, and whether one model beats another.

    from onthejob.eval.stats import bootstrap_ci, paired_bootstrap
    mean, low, high = bootstrap_ci(scores)              # 95% percentile bootstrap
    paired_bootstrap(base_scores, tuned_scores)         # {"diff", "low", "high", "p_value", "significant"}
    mcnemar(lost=3, gained=1)                           # 0.625: paired right/wrong, exact

Eval sets are small (tens to hundreds of questions), so a mean alone says little: 0.62 vs 0.58
on 50 questions is often noise. The paired bootstrap resamples *questions*, keeping each
question's two scores together, which is what makes it much tighter than comparing two separate
intervals. Both are deterministic for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _clean(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None], dtype=np.float64)


def _resample_means(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n, len(x)))  # (n, len(x)): one resample per row
    return x[idx].mean(axis=1)  # (n,)


def bootstrap_ci(values: Sequence[float | None], *, n: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the non-None values; NaNs when there are none."""
    x = _clean(values)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    means = _resample_means(x, n, seed)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(x.mean()), float(low), float(high)


def paired_bootstrap(a: Sequence[float | None], b: Sequence[float | None], *, n: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Mean of b - a over questions, its percentile CI and a two-sided bootstrap p-value.

    Pairs where either score is None are dropped. ``p_value``: twice the share of resamples whose
    mean difference has the opposite sign of the observed one (or is zero), at most 1.
    ``significant``: the interval excludes 0."""
    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap needs equal lengths, got {len(a)} and {len(b)}")
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        nan = float("nan")
        return {"diff": nan, "low": nan, "high": nan, "p_value": nan, "significant": False, "n": 0}
    d = np.asarray([y - x for x, y in pairs], dtype=np.float64)
    diff = float(d.mean())
    means = _resample_means(d, n, seed)
    alpha = (1 - level) / 2
    low, high = (float(q) for q in np.quantile(means, [alpha, 1 - alpha]))
    if diff > 0:
        other = np.mean(means <= 0)
    elif diff < 0:
        other = np.mean(means >= 0)
    else:
        other = 1.0  # no observed difference at all
    return {
        "diff": diff,
        "low": low,
        "high": high,
        "p_value": float(min(1.0, 2 * other)),
        "significant": bool(low > 0 or high < 0),
        "n": len(d),
    }


def mcnemar(lost: int, gained: int) -> float:
    """Exact two-sided McNemar p-value for paired right/wrong outcomes.

    Only the discordant questions carry information: ``lost`` (right before, wrong after) and
    ``gained`` (wrong before, right after). Under "no change" each discordant question is a fair
    coin, so the p-value is twice the binomial tail of the smaller count, at most 1."""
    n = lost + gained
    if n == 0:
        return 1.0
    k = min(lost, gained)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2 * tail))
