"""The APT adapter: a frozen linear layer plus a growable low-rank update.

    y = W x + b + s * B (A x)        A: (r, d_in), B: (d_out, r), s = alpha / r_init (kept constant)

`B` starts at zero, so wrapping a layer leaves its output unchanged. Rank growth appends random rows
to `A` and zero columns to `B`, which again leaves the output unchanged. After training the update
is merged into `W` and the wrapper is replaced by a plain `nn.Linear`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class AptLinear(nn.Module):
    """Frozen `nn.Linear` with a trainable low-rank adapter whose rank can grow.

    Args:
        base: the linear layer to adapt; its parameters are frozen.
        rank: initial adapter rank r.
        alpha: LoRA alpha; the scaling `alpha / rank` is fixed at construction and never changes.
        dropout: dropout on the adapter input.
        init: "kaiming" (Kaiming-uniform, as PEFT) or "gaussian" (N(0, 1/r)) for `A`.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0, init: str = "kaiming"):
        super().__init__()
        if rank < 1:
            raise ValueError(f"adapter rank must be >= 1, got {rank}")
        self.base = base
        self.base.requires_grad_(False)
        self.scaling = alpha / rank
        self.init = init
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        factory = {"device": base.weight.device, "dtype": torch.float32}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))  # (r, d_in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))  # (d_out, r)
        self._init_rows(self.lora_A.data)
        self.merged = False

    @property
    def rank(self) -> int:
        """Current adapter rank."""
        return self.lora_A.shape[0]

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> nn.Parameter:
        """The frozen base weight (model code reads it, e.g. T5's FFN checks `wo.weight.dtype`)."""
        return self.base.weight

    @property
    def bias(self) -> nn.Parameter | None:
        """The frozen base bias."""
        return self.base.bias

    def _init_rows(self, rows: torch.Tensor) -> None:
        if self.init == "gaussian":
            nn.init.normal_(rows, std=1.0 / max(1, self.rank))
        else:
            nn.init.kaiming_uniform_(rows, a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        """The dense update `s * B @ A`, shape (d_out, d_in)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)  # (..., d_out)
        if self.merged:
            return out
        h = self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.t()  # (..., r)
        return out + (self.scaling * (h @ self.lora_B.t())).to(out.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapter into the frozen weight (idempotent)."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge` (idempotent)."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

    @torch.no_grad()
    def grow(self, new_rank: int) -> None:
        """Increase the rank to `new_rank`, keeping the layer's output unchanged.

        New rows of `A` are random, new columns of `B` are zero. The Parameter objects are kept
        (their data is replaced), so an optimizer keeps its references; its state for these two
        tensors must be padded by the caller (see `growth.pad_optimizer_state`). No autograd graph
        that uses the adapter may be alive (autograd caches parameter shapes).
        """
        extra = new_rank - self.rank
        if extra < 0:
            raise ValueError(f"cannot shrink adapter rank from {self.rank} to {new_rank}")
        if extra == 0:
            return
        if self.merged:
            raise RuntimeError("unmerge the adapter before growing its rank")
        rows = torch.empty(extra, self.in_features, device=self.lora_A.device, dtype=self.lora_A.dtype)
        self._init_rows(rows)
        self.lora_A.data = torch.cat([self.lora_A.data, rows], dim=0)  # (r', d_in)
        zeros = self.lora_B.new_zeros(self.out_features, extra)
        self.lora_B.data = torch.cat([self.lora_B.data, zeros], dim=1)  # (d_out, r')
        for p in (self.lora_A, self.lora_B):
            p.grad = None

    def to_linear(self) -> nn.Linear:
        """Return a plain `nn.Linear` holding the merged weights (the adapter disappears)."""
        self.merge()
        return self.base

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scaling={self.scaling:g}, merged={self.merged}"


def base_linear(module: nn.Module) -> nn.Linear:
    """The underlying `nn.Linear` of a plain or adapted linear layer."""
    return module.base if isinstance(module, AptLinear) else module


def effective_weight(module: nn.Module) -> torch.Tensor:
    """Weight that the layer applies, adapter included, shape (d_out, d_in)."""
    if isinstance(module, AptLinear) and not module.merged:
        return module.base.weight + module.delta_weight().to(module.base.weight.dtype)
    return base_linear(module).weight


def attach_adapters(slots, rank: int, alpha: float, dropout: float = 0.0, init: str = "kaiming") -> dict:
    """Wrap the linear of every slot (objects with `name`, `parent`, `attr`) in an `AptLinear`.

    Returns {slot name: AptLinear}. Slots that already hold an adapter are returned as they are.
    """
    adapters = {}
    for slot in slots:
        layer = getattr(slot.parent, slot.attr)
        if not isinstance(layer, AptLinear):
            layer = AptLinear(layer, rank, alpha, dropout, init)
            setattr(slot.parent, slot.attr, layer)
        adapters[slot.name] = layer
    return adapters


def find_adapters(model: nn.Module) -> dict[str, AptLinear]:
    """Every `AptLinear` in `model`, by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AptLinear)}


def merge_adapters(model: nn.Module) -> int:
    """Replace every `AptLinear` in `model` by its merged `nn.Linear`; returns how many were merged."""
    count = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, AptLinear):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, module.to_linear())
            count += 1
    return count
