"""Schedules of APT as pure functions of the training step (apt-method.md sections 3, 6 and 7).

Every function takes the current step and the window ``[start, end]`` in absolute steps:

* :func:`retain_ratio`: cubic retained fraction ``rho_t`` of the prunable parameters.
* :func:`distill_weight`: self-distillation weight ``mu``, linear from 0 to 1.
* :func:`tuning_budget`: adapter-parameter budget, linear from ``initial`` to ``max_ratio * initial``.
* :func:`is_replan_step`: whether masks (and adapter ranks) are re-planned at a step.

:func:`resolve_step` turns a config value (absolute step or fraction of training) into a step, and
:func:`phase_steps` a run's length and config values into its phase boundaries.
"""

from __future__ import annotations

import math

__all__ = [
    "distill_weight",
    "is_replan_step",
    "phase_steps",
    "resolve_step",
    "retain_ratio",
    "tuning_budget",
]


def resolve_step(value: int | float, total_steps: int) -> int:
    """Convert a config step value to an absolute step.

    An ``int`` is an absolute step; a ``float`` in ``[0, 1]`` is a fraction of ``total_steps``,
    rounded half up. Raises ``ValueError`` for a negative int, a float outside ``[0, 1]`` (or nan),
    a bool, or a negative ``total_steps``.
    """
    if total_steps < 0:
        raise ValueError(f"total_steps must be >= 0, got {total_steps}")
    if isinstance(value, bool):
        raise ValueError(f"a step must be an int (absolute) or a float in [0, 1] (fraction), got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"an absolute step must be >= 0, got {value}")
        return value
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"a fractional step must lie in [0, 1], got {value!r}; write an int for an absolute step"
        )
    return math.floor(value * total_steps + 0.5)


def phase_steps(
    start_step: int | float, end_step: int | float, after_pruning: float, total_steps: int
) -> tuple[int, int, int]:
    """(first pruning step, last pruning step, last distillation step) of a run of ``total_steps``.

    ``start_step`` and ``end_step`` are config values (see :func:`resolve_step`); both are clamped to
    the run's last step so the final re-plan happens inside it. Distillation continues for
    ``after_pruning`` of the steps left after the window.
    """
    last = total_steps - 1
    start = min(resolve_step(start_step, total_steps), last)
    end = min(max(resolve_step(end_step, total_steps), start), last)
    return start, end, end + round(after_pruning * (total_steps - end))


def _check_window(start: int, end: int) -> None:
    """Raise ``ValueError`` unless ``0 <= start <= end``."""
    if start < 0 or end < start:
        raise ValueError(f"need 0 <= start <= end, got start={start}, end={end}")


def _progress(step: int, start: int, end: int) -> float:
    """Fraction of the window ``[start, end]`` completed at ``step``, clamped to ``[0, 1]``.

    An empty window (``end == start``) is complete from ``start`` on.
    """
    _check_window(start, end)
    if step >= end:
        return 1.0
    if step <= start:
        return 0.0
    return (step - start) / (end - start)


def retain_ratio(step: int, start: int, end: int, target_sparsity: float) -> float:
    """Retained fraction ``rho_t`` of the prunable parameters at ``step`` (cubic schedule).

    ``rho_T = 1 - target_sparsity``; ``rho_t`` is 1.0 up to ``start``, ``rho_T`` from ``end`` on, and
    ``rho_T + (1 - rho_T) * (1 - (step - start) / (end - start)) ** 3`` in between. With
    ``end == start`` it jumps to ``rho_T`` at ``start``.
    """
    if not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"target_sparsity must lie in [0, 1), got {target_sparsity!r}")
    rho_final = 1.0 - target_sparsity
    progress = _progress(step, start, end)
    if progress <= 0.0:
        return 1.0
    if progress >= 1.0:
        return rho_final
    remaining = 1.0 - progress
    return min(1.0, rho_final + (1.0 - rho_final) * (remaining * remaining * remaining))


def distill_weight(step: int, start: int, end: int) -> float:
    """Self-distillation weight ``mu``: 0 up to ``start``, linear to 1 at ``end``, 1 afterwards."""
    return _progress(step, start, end)


def tuning_budget(step: int, start: int, end: int, initial: int, max_ratio: float) -> int:
    """Adapter-parameter budget at ``step``.

    ``initial`` up to ``start``, growing linearly to ``round(max_ratio * initial)`` at ``end`` and
    constant afterwards (values rounded half up). ``max_ratio`` must be >= 1 (the budget only grows).
    """
    if initial < 0:
        raise ValueError(f"initial tuning budget must be >= 0, got {initial}")
    if not max_ratio >= 1.0:
        raise ValueError(f"max_ratio must be >= 1 (the tuning budget only grows), got {max_ratio!r}")
    final = math.floor(max_ratio * initial + 0.5)
    return math.floor(initial + (final - initial) * _progress(step, start, end) + 0.5)


def is_replan_step(step: int, start: int, end: int, every: int) -> bool:
    """True when ``start <= step <= end`` and ``step`` lies on the ``every``-step grid from ``start``."""
    _check_window(start, end)
    if every < 1:
        raise ValueError(f"the re-plan interval must be >= 1, got {every}")
    return start <= step <= end and (step - start) % every == 0


def warmup_linear_factor(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then linear decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def spread_replans(start: int, end: int, every: int, count: int) -> set[int]:
    """`count` of the window's re-plan steps (``start``, every ``every`` steps, and ``end``), evenly
    spread, the last one always included; all of them when there are fewer."""
    steps = sorted({*range(start, end + 1, every), end}) if count > 0 else []
    if count >= len(steps):
        return set(steps)
    if count == 1:
        return {steps[-1]}
    return {steps[round(i * (len(steps) - 1) / (count - 1))] for i in range(count)}
