"""Units and schedules (train/schedule.py): the learning-rate multiplier step by step, and how
rows are dealt to steps, micro-batches and processes."""

from __future__ import annotations

import pytest

from onthejob.train.schedule import Plan, lr_lambda


def test_warm_up_rises_linearly_to_the_peak():
    f = lr_lambda(warmup=4, total=20, schedule="cosine", min_ratio=0.0)
    assert [f(s) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


@pytest.mark.parametrize(("schedule", "halfway"), [("cosine", 0.55), ("linear", 0.55), ("constant", 1.0)])
def test_decay_after_warm_up_ends_at_min_ratio(schedule, halfway):
    f = lr_lambda(warmup=4, total=20, schedule=schedule, min_ratio=0.1)
    end = 1.0 if schedule == "constant" else 0.1
    assert f(4) == pytest.approx(1.0)  # the peak, right after warm-up
    assert f(12) == pytest.approx(halfway)  # halfway through the decay: 0.1 + 0.9 * 0.5
    assert f(20) == pytest.approx(end) and f(30) == pytest.approx(end)  # and it stays there


def test_cosine_and_linear_differ_between_the_ends():
    cosine = lr_lambda(warmup=0, total=100, schedule="cosine", min_ratio=0.0)
    linear = lr_lambda(warmup=0, total=100, schedule="linear", min_ratio=0.0)
    assert cosine(0) == linear(0) == 1.0
    assert cosine(25) == pytest.approx(0.5 * (1 + 2**-0.5)) and linear(25) == pytest.approx(0.75)
    assert cosine(75) == pytest.approx(0.5 * (1 - 2**-0.5)) and linear(75) == pytest.approx(0.25)


def test_one_process_accumulating_two_sees_what_two_processes_see_together():
    one = Plan(37, micro_batch=3, grad_accum=2, world=1, seed=5)
    two = Plan(37, micro_batch=3, grad_accum=1, world=2, seed=5)
    assert one.steps_per_epoch == two.steps_per_epoch == 7
    for step in range(3 * one.steps_per_epoch):
        assert one.micro_batches(step, 0) == [two.micro_batches(step, 0)[0], two.micro_batches(step, 1)[0]]


def test_every_step_is_full_size_and_the_last_one_wraps_to_the_epochs_first_rows():
    plan = Plan(10, micro_batch=3, grad_accum=1, world=1, seed=0)
    assert plan.steps_per_epoch == 4
    steps = [plan.micro_batches(step, 0)[0] for step in range(4)]
    assert all(len(rows) == 3 for rows in steps)
    assert sorted(sum(steps[:3], [])) == sorted(set(sum(steps[:3], [])))  # no row twice before the wrap
    assert set(sum(steps, [])) == set(range(10))  # every row in the epoch
    assert steps[3][1:] == steps[0][:2]  # the 10th row, then the first two again


def test_the_order_is_fixed_by_the_seed_and_changes_each_epoch():
    def epoch(plan, e):
        return [r for step in range(plan.steps_per_epoch) for r in plan.micro_batches(e * plan.steps_per_epoch + step, 0)[0]]

    a, b, other = (Plan(12, micro_batch=4, grad_accum=1, world=1, seed=s) for s in (1, 1, 2))
    assert epoch(a, 0) == epoch(b, 0) and epoch(a, 1) == epoch(b, 1)
    assert sorted(epoch(a, 0)) == list(range(12))  # a permutation
    assert epoch(a, 0) != epoch(other, 0)
    assert epoch(a, 0) != epoch(a, 1)


def test_steps_from_epochs_or_max_steps():
    plan = Plan(10, micro_batch=2, grad_accum=1, world=1, seed=0)
    assert plan.total_steps(1.5, None) == 8 and plan.total_steps(3, 7) == 7
    assert plan.epoch_of(15) == 3.0
