"""Tests for aptune.schedule: cubic retain ratio, distillation weight, tuning budget, step helpers."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aptune.schedule import (
    distill_weight,
    is_replan_step,
    phase_steps,
    resolve_step,
    retain_ratio,
    spread_replans,
    tuning_budget,
)

START, END = 100, 500


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int]:
    """A pruning window ``start < end``."""
    start = draw(st.integers(0, 10_000))
    return start, start + draw(st.integers(1, 10_000))


# --- retain_ratio ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.0, 0.3, 0.6, 0.95])
def test_retain_ratio_endpoints_exact(target: float) -> None:
    rho_final = 1.0 - target
    assert retain_ratio(0, START, END, target) == 1.0
    assert retain_ratio(START, START, END, target) == 1.0
    assert retain_ratio(END, START, END, target) == rho_final
    assert retain_ratio(END + 1, START, END, target) == rho_final
    assert retain_ratio(10 * END, START, END, target) == rho_final


def test_retain_ratio_cubic_midpoint() -> None:
    target = 0.6
    rho_final = 1.0 - target
    mid = retain_ratio((START + END) // 2, START, END, target)
    assert mid == pytest.approx(rho_final + (1.0 - rho_final) / 8, abs=1e-12)


def test_retain_ratio_matches_formula_inside_window() -> None:
    rho_final = 0.4
    for step in range(START + 1, END):
        expected = rho_final + (1 - rho_final) * (1 - (step - START) / (END - START)) ** 3
        assert retain_ratio(step, START, END, 0.6) == pytest.approx(expected, abs=1e-12)


def test_retain_ratio_monotone_sweep() -> None:
    values = [retain_ratio(step, START, END, 0.6) for step in range(0, END + 50)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert values[0] == 1.0
    assert values[-1] == pytest.approx(0.4)


def test_retain_ratio_empty_window_jumps_at_start() -> None:
    assert retain_ratio(99, 100, 100, 0.6) == 1.0
    assert retain_ratio(100, 100, 100, 0.6) == pytest.approx(0.4)
    assert retain_ratio(101, 100, 100, 0.6) == pytest.approx(0.4)


@pytest.mark.parametrize("target", [-0.1, 1.0, 1.5, math.nan])
def test_retain_ratio_rejects_bad_target(target: float) -> None:
    with pytest.raises(ValueError, match="target_sparsity"):
        retain_ratio(0, START, END, target)


def test_retain_ratio_rejects_reversed_window() -> None:
    with pytest.raises(ValueError, match="start <= end"):
        retain_ratio(0, 10, 5, 0.5)


@settings(max_examples=200, deadline=None)
@given(window=windows(), target=st.floats(0.0, 0.99), steps=st.lists(st.integers(0, 30_000), min_size=2))
def test_retain_ratio_property(window: tuple[int, int], target: float, steps: list[int]) -> None:
    start, end = window
    rho_final = 1.0 - target
    steps = sorted(steps)
    values = [retain_ratio(step, start, end, target) for step in steps]
    assert all(rho_final <= v <= 1.0 for v in values)
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert retain_ratio(start, start, end, target) == 1.0
    assert retain_ratio(end, start, end, target) == rho_final


# --- distill_weight -------------------------------------------------------------------------------


def test_distill_weight_endpoints_and_linear() -> None:
    assert distill_weight(0, START, END) == 0.0
    assert distill_weight(START, START, END) == 0.0
    assert distill_weight((START + END) // 2, START, END) == pytest.approx(0.5)
    assert distill_weight(END, START, END) == 1.0
    assert distill_weight(END + 1000, START, END) == 1.0


def test_distill_weight_empty_window() -> None:
    assert distill_weight(4, 5, 5) == 0.0
    assert distill_weight(5, 5, 5) == 1.0


@settings(max_examples=150, deadline=None)
@given(window=windows(), steps=st.lists(st.integers(0, 30_000), min_size=2))
def test_distill_weight_monotone(window: tuple[int, int], steps: list[int]) -> None:
    start, end = window
    values = [distill_weight(step, start, end) for step in sorted(steps)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a <= b for a, b in itertools.pairwise(values))


# --- tuning_budget --------------------------------------------------------------------------------


def test_tuning_budget_endpoints() -> None:
    assert tuning_budget(0, START, END, 1000, 4.0) == 1000
    assert tuning_budget(START, START, END, 1000, 4.0) == 1000
    assert tuning_budget((START + END) // 2, START, END, 1000, 4.0) == 2500
    assert tuning_budget(END, START, END, 1000, 4.0) == 4000
    assert tuning_budget(END + 7, START, END, 1000, 4.0) == 4000


def test_tuning_budget_rounds_final() -> None:
    assert tuning_budget(END, START, END, 3, 1.5) == 5  # round(4.5) half up
    assert tuning_budget(END, START, END, 7, 1.0) == 7


@pytest.mark.parametrize(("initial", "ratio"), [(-1, 2.0), (10, 0.5), (10, math.nan)])
def test_tuning_budget_rejects_bad_arguments(initial: int, ratio: float) -> None:
    with pytest.raises(ValueError):
        tuning_budget(0, START, END, initial, ratio)


@settings(max_examples=150, deadline=None)
@given(
    window=windows(),
    initial=st.integers(0, 10**7),
    ratio=st.floats(1.0, 8.0),
    steps=st.lists(st.integers(0, 30_000), min_size=2),
)
def test_tuning_budget_monotone(
    window: tuple[int, int], initial: int, ratio: float, steps: list[int]
) -> None:
    start, end = window
    final = math.floor(ratio * initial + 0.5)
    values = [tuning_budget(step, start, end, initial, ratio) for step in sorted(steps)]
    assert all(isinstance(v, int) for v in values)
    assert all(initial <= v <= final for v in values)
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert tuning_budget(end, start, end, initial, ratio) == final


# --- resolve_step / is_replan_step ----------------------------------------------------------------


def test_resolve_step_conversions() -> None:
    assert resolve_step(250, 1000) == 250
    assert resolve_step(5000, 1000) == 5000  # absolute steps are not clamped
    assert resolve_step(0.25, 1000) == 250
    assert resolve_step(0.0, 1000) == 0
    assert resolve_step(1.0, 1000) == 1000
    assert resolve_step(1, 1000) == 1  # int 1 is a step, float 1.0 a fraction
    assert resolve_step(0.5, 101) == 51  # rounded half up
    assert resolve_step(1 / 3, 1000) == 333


@pytest.mark.parametrize("value", [-1, -0.1, 1.01, 2.0, math.nan, math.inf, True])
def test_resolve_step_errors(value: float) -> None:
    with pytest.raises(ValueError):
        resolve_step(value, 1000)


def test_resolve_step_rejects_negative_total() -> None:
    with pytest.raises(ValueError, match="total_steps"):
        resolve_step(0.5, -1)


def test_phase_steps_of_the_three_epoch_built_in_run() -> None:
    # 957 steps, pruning 0.1-0.6, distilling half of the rest: the steps the quality suite logs
    assert phase_steps(0.1, 0.6, 0.5, 957) == (96, 574, 766)
    assert phase_steps(0.1, 0.6, 0.0, 957) == (96, 574, 574)


def test_phase_steps_keep_the_window_inside_the_run() -> None:
    assert phase_steps(2000, 5000, 1.0, 1000) == (999, 999, 1000)  # last re-plan at the last step
    assert phase_steps(0.5, 0.2, 0.0, 1000) == (500, 500, 500)  # an end before the start is the start


def test_replan_steps() -> None:
    steps = [step for step in range(0, 700) if is_replan_step(step, START, END, 100)]
    assert steps == [100, 200, 300, 400, 500]
    uneven = [step for step in range(0, 700) if is_replan_step(step, 100, 450, 100)]
    assert uneven == [100, 200, 300, 400]
    assert [step for step in range(10) if is_replan_step(step, 3, 3, 5)] == [3]


def test_replan_rejects_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        is_replan_step(0, START, END, 0)


def test_warmup_linear_factor_rises_then_decays_to_zero():
    from aptune.schedule import warmup_linear_factor

    values = [warmup_linear_factor(s, 4, 20) for s in range(21)]
    assert values[:4] == [0.2, 0.4, 0.6, 0.8]
    assert values[4] == 1.0 and values[20] == 0.0
    assert all(a >= b for a, b in itertools.pairwise(values[4:]))


def test_speed_checks_are_spread_over_the_replans_and_end_at_the_last():
    assert spread_replans(100, 500, 100, 3) == {100, 300, 500}
    assert spread_replans(100, 450, 100, 1) == {450}  # the final re-plan is off the grid
    assert spread_replans(100, 450, 100, 10) == {100, 200, 300, 400, 450}
    assert spread_replans(100, 500, 100, 0) == set()


@given(window=windows(), every=st.integers(1, 500), count=st.integers(1, 8))
def test_speed_check_steps_are_replan_steps(window: tuple[int, int], every: int, count: int) -> None:
    start, end = window
    steps = spread_replans(start, end, every, count)
    assert end in steps and len(steps) == min(count, len({*range(start, end + 1, every), end}))
    assert all(is_replan_step(s, start, end, every) or s == end for s in steps)
