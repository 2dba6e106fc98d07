"""Adaptive tuning: adapter importance and rank growth (apt-method.md section 6).

Importance of an adapter is the salience of its `B` entries, `sum |B * dL/dB|`, taken every step
and smoothed by an exponential moving average like block salience. At a re-plan the tuning budget
grows; the most important half of the adapters below `max_rank` absorb the whole difference between
the budget and the adapter parameters the (pruned) model holds now, as the reference's
`tophalf_limited` rule does: each grows from rank r to `floor(r * (1 + gap / top_params))`, capped.
Growth keeps the model output unchanged and new optimizer state starts at zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .adapter import AptLinear


@dataclass
class AdapterImportance:
    """Smoothed importance of every adapter, by name: I_t = beta * I_{t-1} + (1 - beta) * I^_t."""

    beta: float
    value: dict[str, float] = field(default_factory=dict)

    @torch.no_grad()
    def accumulate(self, adapters: dict[str, AptLinear]) -> None:
        """Fold this step's `sum |B * dL/dB|` of each adapter in; call after backward (and after the
        gradients were averaged across processes), before the optimizer step."""
        for name, adapter in adapters.items():
            grad = adapter.lora_B.grad
            if grad is not None:
                score = float((adapter.lora_B * grad).abs().sum())
                old = self.value.get(name)
                self.value[name] = score if old is None else self.beta * old + (1 - self.beta) * score

    def state_dict(self) -> dict[str, object]:
        """The smoothed importance by adapter name."""
        return {"value": dict(self.value)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Take the smoothed importance from `state`."""
        self.value = dict(state["value"])


def plan_growth(
    ranks: dict[str, int],
    importance: dict[str, float],
    per_rank: dict[str, int],
    budget: float,
    max_rank: int,
) -> dict[str, int]:
    """New ranks that bring the adapter parameters up to `budget` (never beyond it).

    per_rank[name]: parameters one rank of that adapter costs (d_in + d_out). The top half of all
    adapters by importance, among those below `max_rank`, share the whole gap between `budget` and
    the current count: each grows by the same factor `1 + gap / (their parameters)`, rounded down and
    capped at `max_rank`. Ties are broken by name so every process makes the same choice.
    """
    current = sum(r * per_rank[n] for n, r in ranks.items())
    if budget <= current:
        return dict(ranks)
    below_cap = [n for n in ranks if ranks[n] < max_rank]
    order = sorted(below_cap, key=lambda n: (-importance.get(n, 0.0), n))
    top = order[: len(ranks) // 2] or order[:1]
    top_params = sum(ranks[n] * per_rank[n] for n in top)
    if top_params == 0:
        return dict(ranks)
    factor = 1 + (budget - current) / top_params
    new = dict(ranks)
    for n in top:
        new[n] = min(max_rank, max(ranks[n], math.floor(ranks[n] * factor)))
    return new


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


def rank_costs(adapters: dict[str, AptLinear]) -> dict[str, int]:
    """Parameters one rank of each adapter costs now: d_in + d_out (these shrink with the model)."""
    return {name: a.in_features + a.out_features for name, a in adapters.items()}


def adapter_params(adapters: dict[str, AptLinear]) -> int:
    """Trainable adapter parameters (A and B of every adapter)."""
    return sum(a.lora_A.numel() + a.lora_B.numel() for a in adapters.values())
