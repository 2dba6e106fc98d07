"""Outlier-aware salience of heads, FFN neurons and hidden dimensions (apt-method.md section 2).

For one channel j of an activation H over the batches of a window:

    S~_j = (sum_batches sum_i |dL/dH_{j,i}|) * (sum_batches sum_i |H_{j,i}|)

Both sums are accumulated per channel at the mask sites (O(channels) memory); a block's salience is
the sum over its channels. The outlier term adds `kurtosis_weight * sqrt(max(Kurt(O), 0))` with
`O = W[:, J] * mean|X_J|` for the columns J of the block's output projection. Scores are smoothed
by an exponential moving average across re-plans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .masks import SiteKey
from .search import BlockScores, MaskPlan

AllReduce = Callable[[torch.Tensor], torch.Tensor]
"""Sums a tensor across processes (identity in a single process)."""


def _channel_sum(x: torch.Tensor) -> torch.Tensor:
    return x.detach().abs().float().reshape(-1, x.shape[-1]).sum(0)  # (C,)


@dataclass
class SiteTotals:
    """Accumulated sums of one site: |activation| and |gradient| per channel, and the token count."""

    act: torch.Tensor
    grad: torch.Tensor
    tokens: float


@dataclass
class SalienceCollector:
    """Mask-site observer accumulating batch-compressed |H| and |dL/dH| sums.

    Install it as `MaskHooks.observer`. A forward pass with gradients enabled counts once its
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
        """Start a new window."""
        self.act.clear()
        self.grad.clear()
        self.tokens.clear()

    def totals(self) -> dict[SiteKey, SiteTotals]:
        """Sums of the current window per site (all-reduced across processes when configured)."""
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


def excess_kurtosis_sqrt(blocks: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """sqrt(max(excess kurtosis, 0)) of each row of `blocks` (n_blocks, n_values); 0 for flat rows."""
    centred = blocks - blocks.mean(1, keepdim=True)  # (n, v)
    m2 = centred.pow(2).mean(1)  # (n,)
    m4 = centred.pow(4).mean(1)  # (n,)
    kurt = torch.where(m2 > eps, m4 / m2.clamp_min(eps).pow(2) - 3.0, torch.zeros_like(m2))
    return kurt.clamp_min(0).sqrt()


def outlier_term(weight: torch.Tensor, mean_abs_in: torch.Tensor, block: int) -> torch.Tensor:
    """Outlier term per block of `block` consecutive input channels of an output projection.

    weight: (d_out, C) columns of the block's output projection; mean_abs_in: (C,) mean |X|.
    Returns (C // block,).
    """
    out = weight.detach().float() * mean_abs_in  # (d_out, C)
    d_out, channels = out.shape
    per_block = out.view(d_out, channels // block, block).transpose(0, 1).reshape(channels // block, -1)
    return excess_kurtosis_sqrt(per_block)  # (n_blocks,)


def _product(t: SiteTotals | None, size: int) -> torch.Tensor:
    return torch.zeros(size) if t is None else (t.act * t.grad).cpu()


def block_scores(
    totals: dict[SiteKey, SiteTotals],
    heads: tuple[int, ...],
    neurons: tuple[int, ...],
    hidden: int,
    head_width: int,
) -> BlockScores:
    """Activation-gradient salience S~ of every block from one window's site totals.

    Heads sum their `head_width` channels; hidden dims sum over every hidden site. Sites that saw no
    data score 0.
    """
    head_scores = [
        _product(totals.get(("head", layer)), n * head_width).view(n, head_width).sum(1)  # (n_h,)
        for layer, n in enumerate(heads)
    ]
    neuron_scores = [_product(totals.get(("neuron", layer)), n) for layer, n in enumerate(neurons)]
    hidden_score = torch.zeros(hidden)
    for key, t in totals.items():
        if key[0] == "hidden":
            hidden_score += _product(t, hidden)
    return BlockScores(heads=head_scores, neurons=neuron_scores, hidden=hidden_score)


def add_outlier_terms(
    scores: BlockScores,
    totals: dict[SiteKey, SiteTotals],
    head_out_weights: list[torch.Tensor],
    neuron_out_weights: list[torch.Tensor],
    head_width: int,
    weight: float,
) -> BlockScores:
    """Add `weight * sqrt(Kurt(O))` to head and neuron scores (hidden dims have no output projection).

    head_out_weights[l]: (d, n_h^l * head_width) attention output projection of layer l;
    neuron_out_weights[l]: (d, n_f^l) FFN output projection.
    """
    heads, neurons = [], []
    for layer, (s, w) in enumerate(zip(scores.heads, head_out_weights, strict=True)):
        heads.append(s + weight * _outlier(totals.get(("head", layer)), w, head_width))
    for layer, (s, w) in enumerate(zip(scores.neurons, neuron_out_weights, strict=True)):
        neurons.append(s + weight * _outlier(totals.get(("neuron", layer)), w, 1))
    return BlockScores(heads=heads, neurons=neurons, hidden=scores.hidden)


def _outlier(t: SiteTotals | None, w: torch.Tensor, block: int) -> torch.Tensor:
    if t is None or t.tokens == 0:
        return torch.zeros(w.shape[1] // block)
    mean_abs = (t.act / t.tokens).to(w.device)  # (C,)
    return outlier_term(w, mean_abs, block).cpu()


@dataclass
class SalienceEMA:
    """Exponential moving average of block scores: S_t = beta * S_{t-1} + (1 - beta) * S^_t."""

    beta: float
    value: BlockScores | None = None

    def update(self, scores: BlockScores) -> BlockScores:
        """Fold one window's scores in; the first window initialises the average."""
        if self.value is None:
            self.value = scores
        else:
            b = self.beta
            self.value = BlockScores(
                heads=[b * o + (1 - b) * n for o, n in zip(self.value.heads, scores.heads, strict=True)],
                neurons=[
                    b * o + (1 - b) * n for o, n in zip(self.value.neurons, scores.neurons, strict=True)
                ],
                hidden=b * self.value.hidden + (1 - b) * scores.hidden,
            )
        return self.value

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
