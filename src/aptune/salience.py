"""Outlier-aware salience of heads, FFN neurons and hidden dimensions (apt-method.md section 2).

For one channel j of an activation H, per training step (one batch):

    S~_j = (sum_i |dL/dH_{j,i}|) * (sum_i |H_{j,i}|)        (i over the batch's tokens)

Both sums are accumulated per channel at the mask sites during the step (O(channels) memory) and
multiplied once per batch, never across batches, so a score does not depend on how many batches
lie between two re-plans. A block's salience is the sum over its channels. The outlier term adds
`kurtosis_weight * sqrt(max(Kurt(O), 0))` on the same per-batch scale, with `O = W[:, J] * mean|X_J|`
for the columns J of a head's or neuron's output projection, and for a hidden dimension j the
column j of every linear that reads the residual stream inside the layers (a per-dimension scale
does not change a kurtosis). The per-batch scores are smoothed every step by an exponential moving
average (`ScoreAverage`).

The score is pluggable: the `Pruner` calls a `BlockSalience` with one batch's `BatchObservation`
(as Torch-Pruning calls an `Importance`). `OutlierAwareSalience` is APT's; a user may pass any
callable with the same signature.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from .blocks import BlockInventory, BlockScores, MaskPlan
from .masks import SiteKey

AllReduce = Callable[[torch.Tensor], torch.Tensor]
"""Sums a tensor across processes (identity in a single process)."""


_BLOCK_VALUES = 2**18
"""Values per row block of `_channel_sum` (a 1 MB fp32 temporary)."""


def _channel_sum(x: torch.Tensor) -> torch.Tensor:
    """sum |x| over every axis but the last, in fp32: (C,).

    Rows are reduced in blocks of about `_BLOCK_VALUES` values, so the |x| temporary stays small (a
    full-size |x| at every site of every pass cost 6 MB per FFN site of SmolLM2 at batch 16 x 64);
    on a CPU this is about 10x faster than `linalg.vector_norm(x, 1, dim=0)`, whose reduction over
    rows does not vectorise (one thread, a 2048 x 1536 activation: 2 ms against 21 ms). On an
    accelerator that call is one fused kernel without a temporary, and blocks would mean many
    small launches, so it is used there.
    """
    rows = x.detach().reshape(-1, x.shape[-1])  # (N, C)
    if rows.device.type != "cpu":
        return torch.linalg.vector_norm(rows, ord=1, dim=0, dtype=torch.float32)
    total = torch.zeros(rows.shape[1], dtype=torch.float32, device=rows.device)
    for block in rows.split(max(1, _BLOCK_VALUES // rows.shape[1])):
        total += block.abs().sum(0, dtype=torch.float32)
    return total


@dataclass
class SiteTotals:
    """One batch's sums at one site: |activation| and |gradient| per channel, and the token count."""

    act: torch.Tensor
    grad: torch.Tensor
    tokens: float


@dataclass
class SalienceCollector:
    """Mask-site observer accumulating one batch's |H| and |dL/dH| sums per channel.

    Install it as `MaskHooks.observer`; read `totals()` after the step's backward pass, then
    `reset()` before the next batch. A forward pass with gradients enabled counts once its
    backward pass reaches the site (so passes recomputed by gradient checkpointing count once).
    `allreduce` (e.g. a torch.distributed SUM) is applied to all sums at once in `totals()`.
    `grad_scale` multiplies the gradient sums: `1 / N` in an N-process run, where each process's
    loss averages over its 1/N of the batch, so the gradients it sees are N times those of the
    whole batch's mean loss.
    """

    allreduce: AllReduce | None = None
    grad_scale: float = 1.0
    act: dict[SiteKey, torch.Tensor] = field(default_factory=dict)
    grad: dict[SiteKey, torch.Tensor] = field(default_factory=dict)
    tokens: dict[SiteKey, float] = field(default_factory=dict)

    def __call__(self, key: SiteKey, pre: torch.Tensor, post: torch.Tensor) -> None:
        if not (torch.is_grad_enabled() and post.requires_grad):
            return
        act, tokens = _channel_sum(pre), pre.numel() / pre.shape[-1]

        def count(grad: torch.Tensor) -> None:
            # counted when the gradient arrives: a pass recomputed by gradient checkpointing gets none
            self._add(self.act, key, act)
            self._add(self.grad, key, _channel_sum(grad) * self.grad_scale)
            self.tokens[key] = self.tokens.get(key, 0.0) + tokens

        post.register_hook(count)

    @staticmethod
    def _add(store: dict, key: SiteKey, value: torch.Tensor) -> None:
        store[key] = store[key] + value if key in store else value

    def reset(self) -> None:
        """Forget the sums (before the next batch)."""
        self.act.clear()
        self.grad.clear()
        self.tokens.clear()

    def totals(self) -> dict[SiteKey, SiteTotals]:
        """Sums of the current batch per site (all-reduced across processes when configured)."""
        keys = sorted(self.act)
        if not keys:
            return {}
        sizes = [self.act[k].numel() for k in keys]
        flat = torch.cat([torch.cat([self.act[k], self.grad[k]]) for k in keys])  # (2 * sum C,)
        counts = torch.tensor([self.tokens[k] for k in keys], dtype=torch.float64, device=flat.device)
        if self.allreduce is not None:
            flat, counts = self.allreduce(flat), self.allreduce(counts)
        out, offset = {}, 0
        for key, size, count in zip(keys, sizes, counts.tolist(), strict=True):
            pair = flat[offset : offset + 2 * size]
            out[key] = SiteTotals(act=pair[:size], grad=pair[size:], tokens=count)
            offset += 2 * size
        return out


def _kurtosis_sqrt(m2: torch.Tensor, m4: torch.Tensor, power: torch.Tensor, eps: float) -> torch.Tensor:
    """sqrt(max(m4 / m2^2 - 3, 0)) from central moments; 0 where the variance is ~0 relative to
    the mean square `power` (a flat row: kurtosis does not depend on the values' scale)."""
    flat = m2 <= eps * power
    kurt = m4 / torch.where(flat, torch.ones_like(m2), m2).pow(2) - 3.0
    return torch.where(flat, torch.zeros_like(kurt), kurt).clamp_min(0).sqrt()


def excess_kurtosis_sqrt(blocks: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """sqrt(max(excess kurtosis, 0)) of each row of `blocks` (n_blocks, n_values); 0 for flat rows."""
    centred = blocks - blocks.mean(1, keepdim=True)  # (n, v)
    return _kurtosis_sqrt(centred.pow(2).mean(1), centred.pow(4).mean(1), blocks.pow(2).mean(1), eps)


def column_power_sums(w: torch.Tensor) -> torch.Tensor:
    """Sums of w, w^2, w^3 and w^4 over the rows of `w` (d_out, C), per column, in fp64 on w's device:
    (4, C)."""
    x = w.detach().double()  # (d_out, C)
    x2 = x * x  # each power from the one below: a per-step hot path
    s1, s2, s3 = x.sum(0), x2.sum(0), (x2 * x).sum(0)  # (C,) each
    s4 = x2.square_().sum(0)  # (C,)
    return torch.stack([s1, s2, s3, s4])


PowerSums = Callable[[torch.Tensor], torch.Tensor]
"""`column_power_sums` or a cache in front of it (`PowerSumCache`)."""


@dataclass
class PowerSumCache:
    """`column_power_sums` of parameters, kept until the parameter changes.

    A frozen weight (every block reader and output projection without an adapter) keeps its sums
    from step to step. A parameter changed in place (an optimizer step, an adapter merge, a loaded
    checkpoint) has a new version, and one cut by shrinking a new storage and shape, so its sums
    are computed again. Other tensors, such as an adapted layer's effective weight (new at every
    step), are never kept. An entry holds a weak reference to its parameter, so a new parameter at
    a dead one's address is not mistaken for it.
    """

    entries: dict[int, tuple[weakref.ref, tuple, torch.Tensor]] = field(default_factory=dict)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """The power sums of `w`: (4, C)."""
        if not isinstance(w, nn.Parameter):
            return column_power_sums(w)
        key = (w.data_ptr(), w._version, tuple(w.shape), w.dtype, w.device)
        entry = self.entries.get(id(w))
        if entry is not None and entry[0]() is w and entry[1] == key:
            return entry[2]
        sums = column_power_sums(w)
        self.entries[id(w)] = (weakref.ref(w), key, sums)
        return sums


def column_kurtosis_sqrt(
    weights: list[torch.Tensor], eps: float = 1e-10, power_sums: PowerSums = column_power_sums
) -> torch.Tensor:
    """sqrt(max(excess kurtosis, 0)) of each column j over the rows of all `weights` stacked.

    weights: matrices (d_out_k, C) sharing their column count. Equals `excess_kurtosis_sqrt` of the
    transposed concatenation, from per-column power sums (`power_sums` of each matrix), so no
    stacked copy is ever built. Returns (C,).
    """
    sums = torch.zeros(4, weights[0].shape[1], dtype=torch.float64, device=weights[0].device)  # x .. x^4
    for w in weights:
        sums += power_sums(w).to(sums.device)  # a no-op unless the weights span devices
    e1, e2, e3, e4 = sums / sum(w.shape[0] for w in weights)  # raw moments, each (C,)
    m2 = e2 - e1 * e1
    m4 = e4 - 4 * e1 * e3 + 6 * e1 * e1 * e2 - 3 * e1.pow(4)
    return _kurtosis_sqrt(m2, m4, e2, eps).float()


def outlier_term(weight: torch.Tensor, mean_abs_in: torch.Tensor, block: int) -> torch.Tensor:
    """Outlier term per block of `block` consecutive input channels of an output projection.

    weight: (d_out, C) columns of the block's output projection; mean_abs_in: (C,) mean |X|.
    Returns (C // block,).
    """
    out = weight.detach().float() * mean_abs_in  # (d_out, C)
    d_out, channels = out.shape
    per_block = out.view(d_out, channels // block, block).transpose(0, 1).reshape(channels // block, -1)
    return excess_kurtosis_sqrt(per_block)  # (n_blocks,)


def _product(t: SiteTotals | None, size: int, device: torch.device) -> torch.Tensor:
    return torch.zeros(size, device=device) if t is None else (t.act * t.grad).to(device)


def block_scores(
    totals: dict[SiteKey, SiteTotals],
    heads: tuple[int, ...],
    neurons: tuple[int, ...],
    hidden: int,
    head_width: int,
) -> BlockScores:
    """Activation-gradient salience S~ of every block from one batch's site totals.

    Heads sum their `head_width` channels; hidden dims sum over every hidden site. Sites that saw no
    data score 0. The scores stay on the totals' device (`BlockScores.cpu` moves them in one go).
    """
    device = next(iter(totals.values())).act.device if totals else torch.device("cpu")
    head_scores = [
        _product(totals.get(("head", layer)), n * head_width, device).view(n, head_width).sum(1)  # (n_h,)
        for layer, n in enumerate(heads)
    ]
    neuron_scores = [_product(totals.get(("neuron", layer)), n, device) for layer, n in enumerate(neurons)]
    hidden_score = torch.zeros(hidden, device=device)
    for key, t in totals.items():
        if key[0] == "hidden":
            hidden_score += _product(t, hidden, device)
    return BlockScores(heads=head_scores, neurons=neuron_scores, hidden=hidden_score)


@dataclass
class OutlierWeights:
    """The weights the outlier term reads (adapters included), for the current shapes.

    heads[a]: (d, n_h^a * head_width) output projection of attention module a;
    neurons[f]: (d, n_f^f) output projection of FFN f;
    hidden: the (d_out_k, d) linears that read the residual stream inside the layers.
    """

    heads: list[torch.Tensor]
    neurons: list[torch.Tensor]
    hidden: list[torch.Tensor]


def add_outlier_terms(
    scores: BlockScores,
    totals: dict[SiteKey, SiteTotals],
    weights: OutlierWeights,
    head_width: int,
    weight: float,
    power_sums: PowerSums = column_power_sums,
) -> BlockScores:
    """Add `weight * sqrt(Kurt(O))` to every head, neuron and hidden-dimension score of one batch.

    `power_sums` gives the column power sums behind the neurons' and hidden dimensions' terms (a
    `PowerSumCache` keeps those of frozen weights)."""
    heads = [
        s + weight * _outlier(totals.get(("head", a)), w, head_width).to(s.device)
        for a, (s, w) in enumerate(zip(scores.heads, weights.heads, strict=True))
    ]
    neurons = [
        s + weight * _column_outlier(totals.get(("neuron", f)), w, power_sums).to(s.device)
        for f, (s, w) in enumerate(zip(scores.neurons, weights.neurons, strict=True))
    ]
    hidden = scores.hidden
    if weights.hidden:
        term = column_kurtosis_sqrt(weights.hidden, power_sums=power_sums)  # (d,)
        hidden = hidden + weight * term.to(hidden.device)
    return BlockScores(heads=heads, neurons=neurons, hidden=hidden)


@dataclass(frozen=True)
class BatchObservation:
    """What a salience score may read about one batch.

    totals: the batch's |H| and |dL/dH| sums per mask site (`SalienceCollector.totals()`);
    inventory: the model's current block counts; head_width: channels per head at the head sites;
    weights: builds the `OutlierWeights` of the current model on demand (they cost a pass over
    the weights, so a score that does not need them never calls it).
    """

    totals: dict[SiteKey, SiteTotals]
    inventory: BlockInventory
    head_width: int
    weights: Callable[[], OutlierWeights]


class BlockSalience(Protocol):
    """A salience score: one batch's observation -> a score for every block (higher = keep)."""

    def __call__(self, batch: BatchObservation) -> BlockScores: ...


@dataclass(frozen=True)
class OutlierAwareSalience:
    """APT's score: activation x gradient per batch, plus `kurtosis_weight * sqrt(Kurt(O))` when the
    weight is positive (0 gives plain activation-gradient salience). `power_sums` keeps the column
    power sums of frozen weights between batches."""

    kurtosis_weight: float = 1.0
    power_sums: PowerSumCache = field(default_factory=PowerSumCache, compare=False, repr=False)

    def __call__(self, batch: BatchObservation) -> BlockScores:
        """Score every block of `batch`."""
        inv, width = batch.inventory, batch.head_width
        scores = block_scores(batch.totals, inv.heads, inv.neurons, inv.hidden, width)
        if self.kurtosis_weight <= 0:
            return scores
        weights, weight = batch.weights(), self.kurtosis_weight
        return add_outlier_terms(scores, batch.totals, weights, width, weight, self.power_sums)


def _outlier(t: SiteTotals | None, w: torch.Tensor, block: int) -> torch.Tensor:
    if t is None or t.tokens == 0:
        return torch.zeros(w.shape[1] // block, device=w.device)
    mean_abs = (t.act / t.tokens).to(w.device)  # (C,)
    return outlier_term(w, mean_abs, block)


def _column_outlier(t: SiteTotals | None, w: torch.Tensor, power_sums: PowerSums) -> torch.Tensor:
    """The outlier term of single-column blocks (FFN neurons). Scaling a column by its mean |X| > 0
    leaves its kurtosis unchanged, so the term is the weight's own column kurtosis, and 0 where the
    input was never active (the column of O is all zeros). (C,)."""
    if t is None or t.tokens == 0:
        return torch.zeros(w.shape[1], device=w.device)
    active = t.act.to(w.device) > 0  # (C,)
    return torch.where(active, column_kurtosis_sqrt([w], power_sums=power_sums), 0.0)


def _blend(old: BlockScores, new: BlockScores, keep: float) -> BlockScores:
    """keep * old + (1 - keep) * new, block set by block."""

    def mix(o: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return keep * o + (1 - keep) * n

    return BlockScores(
        heads=[mix(o, n) for o, n in zip(old.heads, new.heads, strict=True)],
        neurons=[mix(o, n) for o, n in zip(old.neurons, new.neurons, strict=True)],
        hidden=mix(old.hidden, new.hidden),
    )


@dataclass
class ScoreAverage:
    """Smoothed block scores over steps: S_t = beta * S_{t-1} + (1 - beta) * S^_t.

    The first batch initialises the average. `update(..., mean=True)` folds a batch into a plain
    running mean instead (one-shot pruning from calibration batches, where no batch is older).
    `steps` counts the batches folded in.
    """

    beta: float
    value: BlockScores | None = None
    steps: int = 0

    def update(self, scores: BlockScores, mean: bool = False) -> BlockScores:
        """Fold one batch's scores in; returns the new average."""
        self.steps += 1
        if self.value is None:
            self.value = scores
        else:
            self.value = _blend(self.value, scores, 1 - 1 / self.steps if mean else self.beta)
        return self.value

    def state_dict(self) -> dict[str, object]:
        """The average (tensors, or None before the first batch) and the batch count."""
        v = self.value
        scores = None if v is None else {"heads": v.heads, "neurons": v.neurons, "hidden": v.hidden}
        return {"value": scores, "steps": self.steps}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Take the average and the batch count from `state`."""
        v = state["value"]
        self.value = None if v is None else BlockScores(v["heads"], v["neurons"], v["hidden"])
        self.steps = state["steps"]

    def keep(self, plan: MaskPlan) -> None:
        """Drop the entries of blocks that were physically removed."""
        if self.value is None:
            return
        v = self.value
        self.value = BlockScores(
            heads=[s[k.cpu()] for s, k in zip(v.heads, plan.heads, strict=True)],
            neurons=[s[k.cpu()] for s, k in zip(v.neurons, plan.neurons, strict=True)],
            hidden=v.hidden[plan.hidden.cpu()],
        )
