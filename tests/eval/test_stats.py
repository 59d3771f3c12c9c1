import math

import numpy as np
import pytest

from onthejob.eval.stats import bootstrap_ci, paired_bootstrap


def test_bootstrap_is_deterministic_for_a_seed_and_contains_the_mean():
    values = list(np.random.default_rng(1).random(40))
    first = bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) == first
    assert bootstrap_ci(values, seed=4) != first
    mean, low, high = first
    assert mean == pytest.approx(np.mean(values))
    assert low < mean < high
    # a 95% interval of the mean of 40 uniforms is about ±1.96 * 0.289 / sqrt(40) = ±0.09
    assert 0.12 < high - low < 0.24


def test_bootstrap_ignores_none_and_handles_constants_and_empty():
    assert bootstrap_ci([1.0, None, 1.0]) == (1.0, 1.0, 1.0)
    assert all(math.isnan(x) for x in bootstrap_ci([None, None]))


def test_wider_level_gives_wider_interval():
    values = [0, 1, 1, 0, 1, 1, 1, 0, 1, 0] * 3
    _, lo95, hi95 = bootstrap_ci(values, level=0.95)
    _, lo50, hi50 = bootstrap_ci(values, level=0.50)
    assert lo95 < lo50 < hi50 < hi95


def test_paired_bootstrap_finds_a_clear_difference():
    rng = np.random.default_rng(0)
    a = list(rng.random(50) * 0.5)
    b = [x + 0.3 + 0.05 * rng.standard_normal() for x in a]  # b beats a on every question
    result = paired_bootstrap(a, b, seed=0)
    assert result["diff"] == pytest.approx(np.mean(np.subtract(b, a)))
    assert result["significant"] and result["low"] > 0
    assert result["p_value"] < 0.01
    assert paired_bootstrap(a, b, seed=0) == result  # deterministic
    reverse = paired_bootstrap(b, a, seed=0)
    assert reverse["significant"] and reverse["high"] < 0 and reverse["diff"] == pytest.approx(-result["diff"])


def test_paired_bootstrap_equal_or_noisy_is_not_significant():
    a = [0.2, 0.9, 0.5, 0.7, 0.1] * 6
    same = paired_bootstrap(a, list(a))
    assert same["diff"] == 0 and not same["significant"] and same["p_value"] == 1.0
    # b wins half the questions by 1 and loses the other half by 1: no difference on average
    b = [x + (0.5 if i % 2 else -0.5) for i, x in enumerate(a)]
    noisy = paired_bootstrap(a, b)
    assert not noisy["significant"] and noisy["low"] < 0 < noisy["high"] and noisy["p_value"] > 0.5


def test_paired_bootstrap_drops_pairs_with_none():
    result = paired_bootstrap([1.0, None, 0.0], [1.0, 5.0, 1.0])
    assert result["n"] == 2 and result["diff"] == 0.5
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 2.0])
