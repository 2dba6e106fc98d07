"""The pruning controller: masks + salience + search + physical shrinking for one model.

`Pruner` installs the mask hooks with a salience collector as their observer, folds each batch's
observed activations and gradients into smoothed block scores (`fold_batch`, once per step), turns
those into target masks for a retain ratio (`replan`), decays the masks (`decay`), and physically
removes blocks whose masks reached hard 0 (`shrink`). The training loop drives it; it can also be
used for one-shot pruning from calibration batches (`fold_batch(mean=True)` after each).

Every physical removal goes through `cut`: the model's weights, the optimizer state, the masks and
the smoothed scores are sliced together, and the returned `Cut` lets every other copy of the
weights follow (the training run's teacher and distillation maps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .adapter import effective_weight
from .blocks import BlockScores, MaskPlan
from .config import PruningConfig
from .families import ModelFamily, family_for
from .masks import MaskState, install_masks
from .salience import (
    AllReduce,
    BatchObservation,
    BlockSalience,
    OutlierAwareSalience,
    OutlierWeights,
    SalienceCollector,
    ScoreAverage,
)
from .search import PlanCost, plan_masks
from .shrink import SliceRecord, own_weights, shrink_model, slice_optimizer_state


@dataclass(frozen=True)
class Cut:
    """One physical removal: the keep-plan applied and the in-place cuts it made (in order)."""

    plan: MaskPlan
    records: list[SliceRecord]


class Pruner:
    """Structured pruning state of one model.

    Args:
        model: a model of a supported family (adapters, if any, already attached).
        config: pruning options (`aptune.PruningConfig`; the schedule keys are the caller's).
        salience: the block score; default APT's outlier-aware salience with the config's
            kurtosis weight (0 when the config turns the kurtosis term off).
        allreduce: sums salience statistics across processes (data-parallel runs).
        grad_scale: multiplies salience gradient sums (`1 / processes` in data-parallel runs).
        cost: what the budget counts when not parameters (`latency.LatencyModel`: predicted ms);
            `plan(retain_ratio)` then keeps `retain_ratio` of the unpruned model's cost.
    """

    def __init__(
        self,
        model: nn.Module,
        config: PruningConfig | None = None,
        salience: BlockSalience | None = None,
        allreduce: AllReduce | None = None,
        grad_scale: float = 1.0,
        cost: PlanCost | None = None,
    ):
        self.model = model
        own_weights(model)  # a cut must free what it replaces, not leave it in a mapped file
        self.options = config or PruningConfig()
        weight = self.options.kurtosis_weight if self.options.kurtosis_enabled else 0.0
        self.salience = salience or OutlierAwareSalience(weight)
        self.family: ModelFamily = family_for(model)
        inventory = self.family.inventory(model)
        self.initial_params = inventory.prunable_params()
        self.cost = cost
        self.initial_cost = cost(inventory.heads, inventory.neurons, inventory.hidden) if cost else None
        """The unpruned model's cost in `cost`'s unit (None when the budget counts parameters)."""
        device = next(model.parameters()).device
        self.masks = MaskState.ones(list(inventory.heads), list(inventory.neurons), inventory.hidden, device)
        self.hooks = install_masks(model, self.family, self.masks)
        self.collector = SalienceCollector(allreduce=allreduce, grad_scale=grad_scale)
        self.hooks.observer = self.collector
        self.scores = ScoreAverage(beta=self.options.momentum_salience)

    def inventory(self):
        """The model's current block inventory."""
        return self.family.inventory(self.model)

    def prunable_params(self) -> int:
        """Prunable parameters the model holds now (physically)."""
        return self.inventory().prunable_params()

    def masked_params(self) -> int:
        """Prunable parameters of the blocks whose mask is not zero (the effective model size)."""
        heads = [int((m > 0).sum()) for m in self.masks.heads]
        neurons = [int((m > 0).sum()) for m in self.masks.neurons]
        return self.inventory().prunable_params(heads, neurons, int((self.masks.hidden > 0).sum()))

    def batch_scores(self) -> BlockScores | None:
        """Salience of every block from the batch the collector holds (None when it saw none), on the
        CPU."""
        totals = self.collector.totals()
        if not totals:
            return None
        width = self.family.head_unit(self.model).qo
        scores = self.salience(BatchObservation(totals, self.inventory(), width, self._outlier_weights))
        return scores.cpu()  # one transfer: the scores are computed where the model lives

    @torch.no_grad()
    def _outlier_weights(self) -> OutlierWeights:
        m, family = self.model, self.family
        return OutlierWeights(
            heads=[effective_weight(s.o) for s in family.attention_sites(m)],
            neurons=[effective_weight(f.ffn_out) for f in family.ffn_sites(m)],
            hidden=[effective_weight(r) for r in family.block_readers(m)]
            if self.options.prune_hidden
            else [],
        )

    def fold_batch(self, mean: bool = False) -> BlockScores | None:
        """Fold the batch just observed into the smoothed scores and empty the collector; call once
        per step after backward. `mean` averages instead of smoothing (calibration batches)."""
        scores = self.batch_scores()
        self.collector.reset()
        return None if scores is None else self.scores.update(scores, mean)

    def predicted_cost(self) -> float | None:
        """The cost model's prediction for the model's current (physical) shape, if there is one."""
        if self.cost is None:
            return None
        inv = self.inventory()
        return self.cost(inv.heads, inv.neurons, inv.hidden)

    def plan(self, retain_ratio: float) -> MaskPlan:
        """Best plan under `retain_ratio` x the unpruned model's prunable parameters (or its
        predicted latency, with a `cost`), from the current average scores."""
        if self.scores.value is None:
            raise RuntimeError("no salience yet: run forward/backward passes, then fold_batch()")
        o = self.options
        plan = plan_masks(
            self.inventory(),
            self.scores.value,
            retain_ratio * self.initial_cost if self.cost else int(retain_ratio * self.initial_params),
            align=o.align,
            min_heads=o.min_heads_per_layer,
            min_neurons=o.min_neurons_per_layer,
            prune_hidden=o.prune_hidden,
            uniform_layers=o.uniform_layers,
            cost=self.cost,
        )
        return self._stock_hidden(plan) if o.uniform_layers and o.prune_hidden else plan

    def _stock_hidden(self, plan: MaskPlan) -> MaskPlan:
        """Drop the least salient kept hidden dims until the hidden size is a multiple of what a
        stock checkpoint of the family needs (and of `align`); the plan only gets smaller."""
        step = math.lcm(self.options.align, self.family.stock_hidden_multiple(self.model, plan.kept_heads[0]))
        kept = plan.hidden.nonzero().flatten()  # (d',)
        target = max(step, plan.kept_hidden // step * step)
        if target >= kept.numel():
            return plan
        order = self.scores.value.hidden[kept.cpu()].argsort(descending=True)  # (d',)
        hidden = torch.zeros_like(plan.hidden)
        hidden[kept[order[:target]]] = True
        params = self.inventory().prunable_params(plan.kept_heads, plan.kept_neurons, target)
        return MaskPlan(heads=plan.heads, neurons=plan.neurons, hidden=hidden, params=params)

    def replan(self, retain_ratio: float) -> MaskPlan:
        """Plan for `retain_ratio` from the smoothed scores and make it the masks' new targets."""
        plan = self.plan(retain_ratio)
        self.masks.set_targets(plan)
        return plan

    def decay(self) -> None:
        """Move every mask one step toward its target."""
        self.masks.step(self.options.mask_decay_rate)

    def removable(self, align: bool = True) -> MaskPlan | None:
        """The keep-plan that removes the blocks whose mask and target are both 0 (None when there is
        none). With `align`, a few of them may stay so that the physical widths remain multiples of
        `options.align`."""
        plan = self.masks.hard_zero_plan()
        if align:
            plan = self._aligned(plan)
        return None if keeps_all(plan) else plan

    def cut(self, plan: MaskPlan, optimizer: torch.optim.Optimizer | None = None) -> Cut:
        """Physically remove every block `plan` does not keep: weights, `optimizer` state, masks and
        smoothed scores alike. Call it between steps (the collector's per-shape sums are dropped).
        Returns the cut, for other copies of the weights to follow."""
        records = shrink_model(self.model, plan, self.family)
        if optimizer is not None:
            slice_optimizer_state(optimizer, records)
        self.masks.keep(plan)
        self.scores.keep(plan)
        self.collector.reset()
        return Cut(plan, records)

    def shrink(self, optimizer: torch.optim.Optimizer | None = None, align: bool = True) -> Cut | None:
        """Cut the removable blocks (see `removable`); None when nothing was cut."""
        plan = self.removable(align)
        return None if plan is None else self.cut(plan, optimizer)

    def state_dict(self) -> dict[str, object]:
        """The pruning state a checkpoint holds: initial size, masks and smoothed scores (the
        collector holds nothing between steps)."""
        return {
            "initial_params": self.initial_params,
            "masks": self.masks.state_dict(),
            "scores": self.scores.state_dict(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Take the state of `state_dict()`; the model must already have the state's shapes."""
        self.initial_params = state["initial_params"]
        self.masks.load_state_dict(state["masks"])
        self.scores.load_state_dict(state["scores"])

    def _aligned(self, plan: MaskPlan) -> MaskPlan:
        """Keep a few extra hard-zero blocks so every physical FFN width and the hidden size stay
        multiples of `align` (the removable set mixes old and new plans and need not be aligned).

        The extra blocks stay hard-masked (mask and target 0) until a later shrink removes them.
        """
        a = self.options.align
        return MaskPlan(
            heads=plan.heads,
            neurons=[_round_up(k, a) for k in plan.neurons],
            hidden=_round_up(plan.hidden, a) if self.options.prune_hidden else plan.hidden,
            params=plan.params,
        )

    def harden(self) -> None:
        """Set every mask to its 0/1 target at once."""
        m = self.masks
        m.set_hard(
            MaskPlan(
                heads=[t > 0.5 for t in m.heads_target],
                neurons=[t > 0.5 for t in m.neurons_target],
                hidden=m.hidden_target > 0.5,
                params=-1,
            )
        )

    def finalize(self, optimizer: torch.optim.Optimizer | None = None) -> Cut | None:
        """Make the targets hard, remove their blocks, and take the hooks off the model."""
        self.harden()
        cut = self.shrink(optimizer, align=False)  # exactly the (aligned) targets: no zero block may stay
        self.hooks.remove()
        return cut


def keeps_all(plan: MaskPlan) -> bool:
    """True when `plan` keeps every block (a cut by it would change nothing)."""
    return all(bool(k.all()) for k in [*plan.heads, *plan.neurons, plan.hidden])


def _round_up(keep: torch.Tensor, align: int) -> torch.Tensor:
    """`keep` plus the first dropped entries needed to make its count a multiple of `align` (or all)."""
    count, total = int(keep.sum()), keep.numel()
    missing = min(total, -(-count // align) * align) - count
    if missing == 0:
        return keep
    extra = (~keep).nonzero().flatten()[:missing]
    out = keep.clone()
    out[extra] = True
    return out
