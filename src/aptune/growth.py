"""Adaptive tuning: adapter importance and rank growth (apt-method.md section 6).

Importance of an adapter is the salience of its `B` entries, `sum |B * dL/dB|`, summed over a
window of steps and smoothed like block salience. At a re-plan the most important half of the
adapters grow from rank r to `floor(r * budget_new / budget_old)` (capped); growth keeps the model
output unchanged and new optimizer state starts at zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .adapter import AptLinear


@dataclass
class AdapterImportance:
    """Windowed and smoothed importance of every adapter, by name."""

    beta: float
    allreduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    window: dict[str, float] = field(default_factory=dict)
    value: dict[str, float] = field(default_factory=dict)

    @torch.no_grad()
    def accumulate(self, adapters: dict[str, AptLinear]) -> None:
        """Add `sum |B * dL/dB|` of each adapter; call after backward, before the optimizer step."""
        for name, adapter in adapters.items():
            grad = adapter.lora_B.grad
            if grad is not None:
                score = float((adapter.lora_B * grad).abs().sum())
                self.window[name] = self.window.get(name, 0.0) + score

    def update(self) -> dict[str, float]:
        """Fold the window into the moving average (all-reduced when configured) and start a new one."""
        names = sorted(self.window)
        if names:
            window = torch.tensor([self.window[n] for n in names], dtype=torch.float64)
            if self.allreduce is not None:
                window = self.allreduce(window)
            for name, score in zip(names, window.tolist(), strict=True):
                old = self.value.get(name)
                self.value[name] = score if old is None else self.beta * old + (1 - self.beta) * score
        self.window.clear()
        return dict(self.value)


def plan_growth(
    ranks: dict[str, int], importance: dict[str, float], budget_old: float, budget_new: float, max_rank: int
) -> dict[str, int]:
    """New ranks: the top half of adapters by importance grow by `budget_new / budget_old`.

    Ties are broken by name so every process makes the same choice. Adapters outside the top
    half, or already at `max_rank`, keep their rank.
    """
    if budget_old <= 0 or budget_new <= budget_old:
        return dict(ranks)
    order = sorted(ranks, key=lambda n: (-importance.get(n, 0.0), n))
    top = set(order[: math.ceil(len(order) / 2)])
    factor = budget_new / budget_old
    return {n: min(max_rank, max(r, math.floor(r * factor))) if n in top else r for n, r in ranks.items()}


def pad_optimizer_state(
    optimizer: torch.optim.Optimizer, param: torch.nn.Parameter, dim: int, old: int
) -> None:
    """Extend `param`'s per-element optimizer state with zeros along `dim` after it grew from `old`."""
    state = optimizer.state.get(param)
    if not state:
        return
    for key, value in state.items():
        if torch.is_tensor(value) and value.dim() == param.dim() and value.shape[dim] == old:
            pad_shape = list(value.shape)
            pad_shape[dim] = param.shape[dim] - old
            state[key] = torch.cat([value, value.new_zeros(pad_shape)], dim=dim)


def apply_growth(
    adapters: dict[str, AptLinear], new_ranks: dict[str, int], optimizer: torch.optim.Optimizer | None = None
) -> int:
    """Grow adapters to `new_ranks`, padding optimizer state; returns the number of adapters grown."""
    grown = 0
    for name, adapter in adapters.items():
        old = adapter.rank
        if new_ranks.get(name, old) > old:
            adapter.grow(new_ranks[name])
            if optimizer is not None:
                pad_optimizer_state(optimizer, adapter.lora_A, 0, old)
                pad_optimizer_state(optimizer, adapter.lora_B, 1, old)
            grown += 1
    return grown


def adapter_params(adapters: dict[str, AptLinear]) -> int:
    """Trainable adapter parameters (A and B of every adapter)."""
    return sum(a.lora_A.numel() + a.lora_B.numel() for a in adapters.values())
