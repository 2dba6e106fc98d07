"""Mask search: block inventory + salience scores + parameter budget -> target keep-masks.

Implements apt-method.md section 4. Blocks are attention heads (per attention module), FFN neurons
(per FFN) and hidden dimensions (shared by all of them). An encoder or decoder layer has one
attention module and one FFN; a T5 decoder layer has two attention modules (self and cross) and one
FFN, so the two lists may differ in length. Each block's density is its salience divided by its
parameter cost; the non-forced blocks of all types are sorted by density and the longest prefix
whose model size fits the budget is found by binary search. Model size is not additive
(``C = d' * (sum_a head_cost * n_h'^a + sum_f neuron_cost * n_f'^f)``) but it is monotone in the
prefix length, alignment included, which is what makes the binary search exact.

The budget may count something else than parameters: a `PlanCost` (such as the measured latency
model of `latency.py`) gives each block's cost for the densities and each plan's total, which must
be non-decreasing in every kept count so that the binary search stays exact.

Ordering is deterministic: ties in density are broken by score, then by position in the flattened
block list (heads of attention 0..A-1, neurons of FFN 0..F-1, hidden dims). Within one module and
block type this order equals "score descending, lower index first", so every kept set is a top-k of
its module and type.

This module works on plain counts and tensors only; masks are returned as CPU bool tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from .blocks import BlockInventory, BlockScores, MaskPlan
from .errors import AptuneError

__all__ = ["PlanCost", "PlanError", "minimal_shape", "plan_masks"]


class PlanError(AptuneError):
    """No valid mask plan exists for the given inventory, scores, budget and options."""


class PlanCost(Protocol):
    """What a plan's budget counts when it is not parameters (e.g. predicted latency in ms)."""

    unit: str
    """The budget's unit, for messages."""

    def block_costs(self, inventory: BlockInventory) -> list[float]:
        """Cost of one block of each group: heads per attention module, neurons per FFN, then the
        hidden dims (positive; the densities divide by them)."""

    def __call__(self, heads: Sequence[int], neurons: Sequence[int], hidden: int) -> float:
        """Cost of a plan keeping these counts; non-decreasing in every count."""


@dataclass(frozen=True)
class _Shape:
    """Kept block counts of a plan."""

    heads: tuple[int, ...]
    neurons: tuple[int, ...]
    hidden: int


@dataclass(frozen=True)
class _Ranking:
    """Preference orders of the block groups and the greedy order of the non-forced blocks.

    Groups are numbered: heads of attention 0..A-1, neurons of FFN 0..F-1, hidden dims (A + F).
    """

    group_orders: tuple[torch.Tensor, ...]  # per group, (size_g,) local block indices, best first
    forced: torch.Tensor  # (G,) int64, blocks always kept per group
    greedy_groups: torch.Tensor  # (N_r,) int64, group of each non-forced block, densest first


def _check_finite(scores: torch.Tensor, what: str) -> None:
    """Raise :class:`PlanError` naming ``what`` when ``scores`` holds nan or +-inf."""
    bad = ~torch.isfinite(scores)  # (n,)
    if not bool(bad.any()):
        return
    kinds = [
        name
        for name, hit in (
            ("nan", torch.isnan(scores)),
            ("inf", torch.isposinf(scores)),
            ("-inf", torch.isneginf(scores)),
        )
        if bool(hit.any())
    ]
    first = int(bad.nonzero()[0, 0])
    raise PlanError(
        f"non-finite salience ({', '.join(kinds)}) in {what}: {int(bad.sum())} of {scores.numel()} "
        f"entries, first at index {first}; salience must be finite (check the loss and the activations "
        f"and gradients feeding the salience accumulators)"
    )


def _checked(score: torch.Tensor, expected: int, what: str) -> torch.Tensor:
    """Return ``score`` as a CPU float64 vector after checking its shape and finiteness."""
    if score.dim() != 1 or score.numel() != expected:
        raise PlanError(
            f"scores of {what} have shape {tuple(score.shape)}, expected ({expected},) from the inventory"
        )
    vector = score.detach().to(device="cpu", dtype=torch.float64)  # (n,)
    _check_finite(vector, what)
    return vector


def _validated_scores(inventory: BlockInventory, scores: BlockScores) -> list[torch.Tensor]:
    """Check scores against the inventory; return them as float64 vectors, one per group."""
    for name, per_module, expected in (
        ("heads", scores.heads, inventory.heads),
        ("neurons", scores.neurons, inventory.neurons),
    ):
        if len(per_module) != len(expected):
            raise PlanError(
                f"scores.{name} covers {len(per_module)} modules, the inventory has {len(expected)}"
            )
    groups = [
        _checked(s, n, f"heads of layer {layer}")
        for layer, (s, n) in enumerate(zip(scores.heads, inventory.heads, strict=True))
    ]
    groups += [
        _checked(s, n, f"neurons of layer {layer}")
        for layer, (s, n) in enumerate(zip(scores.neurons, inventory.neurons, strict=True))
    ]
    groups.append(_checked(scores.hidden, inventory.hidden, "hidden dims"))
    return groups


def _group_costs(inventory: BlockInventory) -> list[int]:
    """Parameter cost of one block of each group (at least 1, so densities stay finite)."""
    costs = [inventory.head_cost * inventory.hidden] * len(inventory.heads)
    costs += [inventory.neuron_cost * inventory.hidden] * len(inventory.neurons)
    costs.append(max(1, inventory.hidden_cost()))
    return costs


def _density_order(score: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    """Block order by density descending, ties by score descending, then by position."""
    by_score = torch.argsort(-score, stable=True)  # (N,)
    return by_score[torch.argsort(-density[by_score], stable=True)]  # (N,)


def _rank(groups: list[torch.Tensor], costs: list[float], forced: list[int]) -> _Ranking:
    """Sort all blocks by density and split off each group's ``forced`` best blocks."""
    sizes = [g.numel() for g in groups]
    score = torch.cat(groups)  # (N,)
    density = torch.cat([g / c for g, c in zip(groups, costs, strict=True)])  # (N,)
    group_of = torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])  # (N,)
    local_of = torch.cat([torch.arange(n) for n in sizes])  # (N,)
    order = _density_order(score, density)  # (N,)
    ordered_groups = group_of[order]  # (N,)
    by_group = torch.argsort(ordered_groups, stable=True)  # (N,) positions in `order`, grouped
    rank_in_group = torch.empty_like(by_group)  # (N,)
    rank_in_group[by_group] = torch.cat([torch.arange(n) for n in sizes])
    forced_t = torch.tensor(forced, dtype=torch.int64)  # (G,)
    greedy = rank_in_group >= forced_t[ordered_groups]  # (N,) bool
    group_orders = torch.split(local_of[order][by_group], sizes)
    return _Ranking(tuple(group_orders), forced_t, ordered_groups[greedy])


def _round_up(count: int, align: int, cap: int) -> int:
    """``count`` rounded up to a multiple of ``align``, at most ``cap``."""
    return min(cap, -(-count // align) * align)


def _shape_at(ranking: _Ranking, i: int, inventory: BlockInventory, align: int, uniform: bool) -> _Shape:
    """Kept counts for the greedy prefix of length ``i``, aligned (and made uniform if asked)."""
    n_att, n_ffn = len(inventory.heads), len(inventory.neurons)
    raw = ranking.forced + torch.bincount(ranking.greedy_groups[:i], minlength=n_att + n_ffn + 1)  # (G,)
    counts = raw.tolist()
    heads = counts[:n_att]
    neurons = [
        _round_up(n, align, cap)
        for n, cap in zip(counts[n_att : n_att + n_ffn], inventory.neurons, strict=True)
    ]
    if uniform:
        heads = [max(heads)] * n_att
        neurons = [max(neurons)] * n_ffn
    return _Shape(tuple(heads), tuple(neurons), _round_up(counts[-1], align, inventory.hidden))


def _largest_fitting(cost_at: Callable[[int], int], n: int, budget: int) -> int:
    """Largest ``i`` in ``[0, n]`` with ``cost_at(i) <= budget``.

    Requires ``cost_at`` non-decreasing and ``cost_at(0) <= budget``.
    """
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost_at(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _top_k_mask(order: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of length ``len(order)`` keeping the first ``k`` indices of ``order``."""
    mask = torch.zeros(order.numel(), dtype=torch.bool)  # (n,)
    mask[order[:k]] = True
    return mask


def _check_options(
    inventory: BlockInventory, align: int, min_heads: int, min_neurons: int, uniform: bool
) -> None:
    """Raise on invalid search options."""
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    if min_heads < 0 or min_neurons < 0:
        raise ValueError(f"min_heads and min_neurons must be >= 0, got {min_heads} and {min_neurons}")
    if uniform and (len(set(inventory.heads)) > 1 or len(set(inventory.neurons)) > 1):
        raise PlanError(
            f"uniform_layers needs equal block counts in every layer, got heads={inventory.heads}, "
            f"neurons={inventory.neurons}; plan with uniform_layers=False"
        )


def minimal_shape(
    inventory: BlockInventory,
    *,
    align: int = 8,
    min_heads: int = 1,
    min_neurons: int = 1,
    prune_hidden: bool = True,
) -> tuple[list[int], list[int], int]:
    """Kept heads per attention module, neurons per FFN and the hidden size of the smallest plan
    `plan_masks` can return with these options (its forced blocks, aligned)."""
    heads = [min(min_heads, n) for n in inventory.heads]
    neurons = [_round_up(min(min_neurons, n), align, n) for n in inventory.neurons]
    return heads, neurons, _round_up(1, align, inventory.hidden) if prune_hidden else inventory.hidden


def plan_masks(
    inventory: BlockInventory,
    scores: BlockScores,
    budget: float,
    *,
    align: int = 8,
    min_heads: int = 1,
    min_neurons: int = 1,
    prune_hidden: bool = True,
    uniform_layers: bool = False,
    cost: PlanCost | None = None,
) -> MaskPlan:
    """Choose the blocks to keep so that the prunable parameter count (or, with `cost`, the plan's
    cost in its unit) is at most ``budget``.

    Every layer keeps its ``min_heads`` best heads and ``min_neurons`` best neurons (all of them if it
    has fewer) and at least one hidden dim is kept (all when ``prune_hidden`` is False). The remaining
    blocks are taken by density; kept neuron counts per layer and the kept hidden count are rounded up
    to multiples of ``align`` (capped at the full count) with the next best blocks. With
    ``uniform_layers`` every layer keeps as many heads and neurons as the layer that keeps most.
    The plan is the longest density prefix that fits; raises :class:`PlanError` when even the
    minimal plan exceeds ``budget``, or when the scores are malformed or non-finite.
    """
    _check_options(inventory, align, min_heads, min_neurons, uniform_layers)
    groups = _validated_scores(inventory, scores)
    n_att = len(inventory.heads)
    forced = [min(min_heads, n) for n in inventory.heads] + [min(min_neurons, n) for n in inventory.neurons]
    forced.append(1 if prune_hidden else inventory.hidden)
    ranking = _rank(groups, cost.block_costs(inventory) if cost else _group_costs(inventory), forced)
    total = cost or inventory.prunable_params

    def cost_at(i: int) -> float:
        shape = _shape_at(ranking, i, inventory, align, uniform_layers)
        return total(shape.heads, shape.neurons, shape.hidden)

    minimal = cost_at(0)
    if minimal > budget:
        what, unit = ("latency", f" {cost.unit}") if cost else ("parameter", " prunable params")
        raise PlanError(
            f"{what} budget {budget:g} is below the minimal plan ({minimal:g}{unit} with "
            f"min_heads={min_heads}, min_neurons={min_neurons}, align={align}); lower "
            f"{'target_speedup' if cost else 'target_sparsity'}, or relax min_heads / min_neurons / align"
        )
    best = _largest_fitting(cost_at, ranking.greedy_groups.numel(), budget)
    shape = _shape_at(ranking, best, inventory, align, uniform_layers)
    orders = ranking.group_orders
    return MaskPlan(
        heads=[_top_k_mask(orders[layer], k) for layer, k in enumerate(shape.heads)],
        neurons=[_top_k_mask(orders[n_att + i], k) for i, k in enumerate(shape.neurons)],
        hidden=_top_k_mask(orders[-1], shape.hidden),
        params=inventory.prunable_params(shape.heads, shape.neurons, shape.hidden),
    )
