"""Structured masks (heads, FFN neurons, hidden dimensions), their decay, and where they act.

Masks live in a `MaskState`: one vector per attention module for heads, one per FFN for neurons
(modules may differ in size after physical pruning), and one vector for the hidden dimension. Each
mask value moves toward its 0/1 target by `decay_rate` per step. The masks act through forward
hooks installed on modules that a `ModelFamily` names (no model code is copied):

* head mask: scales each head's context vector at the input of the attention output projection;
* neuron mask: scales the FFN activation at the input of the FFN output projection;
* hidden mask: scales every write to the residual stream. Post-norm models (BERT) write it through
  their norms, so the mask scales the norms' outputs; pre-norm models (LLaMA) write it through the
  embedding and the attention / FFN output projections, so the mask scales those outputs. Either
  way every norm over the hidden dimension computes its statistics over the retained (mask > 0)
  dimensions only, so a hard-masked model and its physically shrunk copy give the same outputs.

Every site can report its pre-mask activation and post-mask output to an observer (salience
collection) through `SiteObserver`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .blocks import MaskPlan

SiteKey = tuple[str, int]
"""A mask site: ("head", attention index), ("neuron", FFN index) or ("hidden", site index)."""

SiteObserver = Callable[[SiteKey, torch.Tensor, torch.Tensor], None]
"""Called as observer(site, pre_mask_activation, post_mask_output) during a forward pass."""


def _decay(value: torch.Tensor, target: torch.Tensor, rate: float) -> torch.Tensor:
    moved = (value + (target - value).clamp(-rate, rate)).clamp(0.0, 1.0)
    # snap float residue (e.g. 40 steps of 0.025) so a mask reaches its target in exactly 1/rate steps
    return torch.where((moved - target).abs() < 1e-6, target, moved)


@dataclass
class MaskState:
    """Current and target masks of one model.

    Attributes:
        heads: per attention module, (n_h^a,) float mask values in [0, 1].
        neurons: per FFN, (n_f^f,) float mask values.
        hidden: (d,) float mask values.
        *_target: the 0/1 targets the values decay toward (set by `set_targets`).
        enabled: when False every site passes activations through unchanged (teacher passes).
    """

    heads: list[torch.Tensor]
    neurons: list[torch.Tensor]
    hidden: torch.Tensor
    heads_target: list[torch.Tensor] = field(default_factory=list)
    neurons_target: list[torch.Tensor] = field(default_factory=list)
    hidden_target: torch.Tensor | None = None
    enabled: bool = True

    @classmethod
    def ones(cls, heads: list[int], neurons: list[int], hidden: int, device=None) -> MaskState:
        """All-ones masks (and targets) for the given per-module counts."""
        state = cls(
            heads=[torch.ones(n, device=device) for n in heads],
            neurons=[torch.ones(n, device=device) for n in neurons],
            hidden=torch.ones(hidden, device=device),
        )
        state.heads_target = [m.clone() for m in state.heads]
        state.neurons_target = [m.clone() for m in state.neurons]
        state.hidden_target = state.hidden.clone()
        return state

    def set_targets(self, plan: MaskPlan) -> None:
        """Adopt a plan's keep/prune decisions as the new 0/1 targets."""
        self.heads_target = [k.to(m) for k, m in zip(plan.heads, self.heads, strict=True)]
        self.neurons_target = [k.to(m) for k, m in zip(plan.neurons, self.neurons, strict=True)]
        self.hidden_target = plan.hidden.to(self.hidden)

    def set_hard(self, plan: MaskPlan) -> None:
        """Set masks and targets directly to a plan's 0/1 values (no decay)."""
        self.set_targets(plan)
        self.heads = [t.clone() for t in self.heads_target]
        self.neurons = [t.clone() for t in self.neurons_target]
        self.hidden = self.hidden_target.clone()

    @torch.no_grad()
    def step(self, rate: float) -> None:
        """Move every mask value toward its target by at most `rate`."""
        self.heads = [_decay(m, t, rate) for m, t in zip(self.heads, self.heads_target, strict=True)]
        self.neurons = [_decay(m, t, rate) for m, t in zip(self.neurons, self.neurons_target, strict=True)]
        self.hidden = _decay(self.hidden, self.hidden_target, rate)

    def is_hard(self) -> bool:
        """True when every mask value equals its 0/1 target."""
        pairs = [
            *zip(self.heads, self.heads_target, strict=True),
            *zip(self.neurons, self.neurons_target, strict=True),
        ]
        pairs.append((self.hidden, self.hidden_target))
        return all(torch.equal(m, t) for m, t in pairs)

    def hard_zero_plan(self) -> MaskPlan:
        """Keep-masks dropping exactly the blocks whose mask and target are both 0 (physical removal)."""

        def keep(m: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return (m > 0) | (t > 0)

        return MaskPlan(
            heads=[keep(m, t) for m, t in zip(self.heads, self.heads_target, strict=True)],
            neurons=[keep(m, t) for m, t in zip(self.neurons, self.neurons_target, strict=True)],
            hidden=keep(self.hidden, self.hidden_target),
            params=-1,
        )

    def keep(self, plan: MaskPlan) -> None:
        """Restrict masks and targets to the kept entries (after the model was physically shrunk)."""
        self.heads = [m[k] for m, k in zip(self.heads, plan.heads, strict=True)]
        self.neurons = [m[k] for m, k in zip(self.neurons, plan.neurons, strict=True)]
        self.heads_target = [m[k] for m, k in zip(self.heads_target, plan.heads, strict=True)]
        self.neurons_target = [m[k] for m, k in zip(self.neurons_target, plan.neurons, strict=True)]
        self.hidden = self.hidden[plan.hidden]
        self.hidden_target = self.hidden_target[plan.hidden]

    _FIELDS = ("heads", "neurons", "hidden", "heads_target", "neurons_target", "hidden_target")

    def state_dict(self) -> dict[str, object]:
        """Mask values and targets (tensors), for checkpoints."""
        return {name: getattr(self, name) for name in self._FIELDS}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Take values and targets from `state`, on this state's device. The fields are set in
        place: installed hooks hold this object, so it is never replaced."""
        device = self.hidden.device
        for name in self._FIELDS:
            value = state[name]
            moved = [v.to(device) for v in value] if isinstance(value, list) else value.to(device)
            setattr(self, name, moved)

    def to_dict(self) -> dict[str, object]:
        """Plain lists, for JSON reports and checkpoints."""
        return {
            "heads": [m.tolist() for m in self.heads],
            "neurons": [m.tolist() for m in self.neurons],
            "hidden": self.hidden.tolist(),
        }


def masked_layer_norm(x: torch.Tensor, norm: nn.LayerNorm, keep: torch.Tensor) -> torch.Tensor:
    """LayerNorm whose mean and variance use only the `keep` dimensions of the last axis.

    Outputs at dropped dimensions are meaningless and must be masked by the caller.
    x: (..., d); keep: (d,) bool.
    """
    keep_f = keep.to(x.dtype)  # (d,)
    count = keep_f.sum()
    mean = (x * keep_f).sum(-1, keepdim=True) / count  # (..., 1)
    centred = (x - mean) * keep_f  # (..., d)
    var = centred.pow(2).sum(-1, keepdim=True) / count  # (..., 1)
    out = centred * torch.rsqrt(var + norm.eps)  # (..., d)
    if norm.weight is not None:
        out = out * norm.weight
    if norm.bias is not None:
        out = out + norm.bias
    return out


def masked_rms_norm(x: torch.Tensor, norm: nn.Module, keep: torch.Tensor) -> torch.Tensor:
    """RMSNorm (LLaMA / T5 style, statistics in fp32) whose mean square uses only the `keep` dims.

    x: (..., d); keep: (d,) bool. `norm` has `weight` and `variance_epsilon` (or `eps`).
    """
    keep_f = keep.to(torch.float32)  # (d,)
    h = x.to(torch.float32)  # (..., d)
    var = (h.pow(2) * keep_f).sum(-1, keepdim=True) / keep_f.sum()  # (..., 1): saves h, not a masked copy
    eps = getattr(norm, "variance_epsilon", None)
    out = h * torch.rsqrt(var + (norm.eps if eps is None else eps))  # (..., d)
    return norm.weight * out.to(x.dtype)


_MASKED_NORMS = {"layer": masked_layer_norm, "rms": masked_rms_norm}


@dataclass
class MaskHooks:
    """Handles of the installed mask hooks; `remove()` restores the unhooked model."""

    handles: list[torch.utils.hooks.RemovableHandle]
    observer: SiteObserver | None = None

    def remove(self) -> None:
        """Remove every hook."""
        for h in self.handles:
            h.remove()
        self.handles.clear()


def _is_full(mask: torch.Tensor) -> bool:
    return bool(torch.all(mask == 1))


def _scaled(x: torch.Tensor, mask: torch.Tensor, full: bool, width: int = 1) -> torch.Tensor:
    """x times `mask`, each mask entry repeated `width` times along the last axis. A full mask gives
    a view of x instead: the same values and gradient, without an activation-sized copy in the
    forward pass and another in the backward pass at every observed site of a dense model
    (salience collection)."""
    if full:
        return x.view_as(x)
    return x * mask.repeat_interleave(width).to(x.dtype)


def _observe(hooks: MaskHooks, key: SiteKey, pre: torch.Tensor, out: torch.Tensor) -> None:
    """Report a site to the observer; make `out` require grad so its gradient can be observed even
    when everything upstream is frozen (e.g. the embedding norm)."""
    if hooks.observer is None:
        return
    if torch.is_grad_enabled() and not out.requires_grad:
        out.requires_grad_()
    hooks.observer(key, pre, out)


def _channel_hook(state: MaskState, hooks: MaskHooks, key: SiteKey, width: int):
    """Forward pre-hook scaling the input channels of a projection by a block mask."""

    def hook(module: nn.Module, args: tuple) -> tuple | None:
        if not state.enabled:
            return None
        mask = (state.heads if key[0] == "head" else state.neurons)[key[1]]
        full = _is_full(mask)
        if full and hooks.observer is None:
            return None
        x = args[0]  # (B, T, n_blocks * width)
        out = _scaled(x, mask, full, width)  # (B, T, n_blocks * width)
        _observe(hooks, key, x, out)
        return (out, *args[1:])

    return hook


def _norm_hook(state: MaskState, hooks: MaskHooks, key: SiteKey, norm_fn, scale: bool):
    """Forward hook re-normalising over retained hidden dims; with `scale`, the norm writes the
    residual stream (post-norm): its output is scaled by the hidden mask and observed."""

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not state.enabled:
            return None
        mask = state.hidden
        full = _is_full(mask)
        if full and (hooks.observer is None or not scale):
            return None
        pre = output if full else norm_fn(args[0], module, mask > 0)  # (B, T, d)
        if not scale:
            return pre
        out = _scaled(pre, mask, full)  # (B, T, d)
        _observe(hooks, key, pre, out)
        return out

    return hook


def _write_hook(state: MaskState, hooks: MaskHooks, key: SiteKey):
    """Forward hook scaling a residual-stream write (pre-norm models) by the hidden mask."""

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not state.enabled:
            return None
        mask = state.hidden
        full = _is_full(mask)
        if full and hooks.observer is None:
            return None
        out = _scaled(output, mask, full)  # (B, T, d)
        _observe(hooks, key, output, out)
        return out

    return hook


def install_masks(model: nn.Module, family, state: MaskState) -> MaskHooks:
    """Install hooks that apply `state` to `model` at the sites `family` names.

    Install after adapters are attached: the hooks sit on the attention/FFN output projections, on
    the hidden-dimension norms and on the residual writers, and survive physical shrinking (modules
    are sliced in place). Hidden-salience sites are numbered ("hidden", i) in forward order.
    """
    hooks = MaskHooks(handles=[])
    width = family.head_unit(model).qo
    for i, sites in enumerate(family.attention_sites(model)):
        hook = _channel_hook(state, hooks, ("head", i), width)
        hooks.handles.append(sites.o.register_forward_pre_hook(hook))
    for i, ffn in enumerate(family.ffn_sites(model)):
        hook = _channel_hook(state, hooks, ("neuron", i), 1)
        hooks.handles.append(ffn.ffn_out.register_forward_pre_hook(hook))
    norm_fn, scale = _MASKED_NORMS[family.norm_kind], family.norm_writes_residual
    for i, norm in enumerate(family.residual_norms(model)):
        hook = _norm_hook(state, hooks, ("hidden", i), norm_fn, scale)
        hooks.handles.append(norm.register_forward_hook(hook))
    for i, writer in enumerate(family.residual_writers(model)):
        hooks.handles.append(writer.register_forward_hook(_write_hook(state, hooks, ("hidden", i))))
    return hooks
