"""Copies of the trainable weights that follow the model's shape changes (apt-method.md section 7).

APT keeps two such copies: the teacher of self-distillation (the adapters and task head of the best
validation state seen while pruning, swapped in for teacher passes over the shared frozen weights)
and the best validation state after pruning that the recovery phase starts from. While a copy is
held the model keeps changing shape: blocks are cut out (`follow_cuts` slices the copy exactly like
the parameters) and adapter ranks grow (`follow_growth` pads the copy with zeros, which leaves its
`B @ A` unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .shrink import SliceRecord


@dataclass
class WeightSnapshot:
    """Values of `params` at one moment; `values[i]` belongs to `params[i]`."""

    params: list[nn.Parameter]
    values: list[torch.Tensor]

    @classmethod
    def take(cls, params: list[nn.Parameter]) -> WeightSnapshot:
        """Copy the current values of `params`."""
        return cls(params=list(params), values=[p.detach().clone() for p in params])

    def swap(self) -> None:
        """Exchange the live values and the snapshot (call twice to restore)."""
        for i, p in enumerate(self.params):
            live = p.data
            p.data = self.values[i]
            self.values[i] = live

    @torch.no_grad()
    def restore(self) -> None:
        """Copy the snapshot into the parameters (their shapes must agree)."""
        for p, v in zip(self.params, self.values, strict=True):
            if p.shape != v.shape:
                raise RuntimeError(
                    f"snapshot of shape {tuple(v.shape)} cannot restore a {tuple(p.shape)} weight"
                )
            p.copy_(v)

    def follow_cuts(self, records: list[SliceRecord]) -> None:
        """Slice the copies exactly like `records` sliced the parameters (in their order)."""
        where = {id(p): i for i, p in enumerate(self.params)}
        for rec in records:
            i = where.get(id(rec.param))
            if i is not None and self.values[i].shape == rec.old_shape:
                self.values[i] = self.values[i].index_select(rec.dim, rec.index.to(self.values[i].device))

    def follow_growth(self) -> None:
        """Zero-pad every copy to its parameter's grown shape (new adapter rows of A and columns of
        B), so the copy's adapter product is unchanged."""
        for i, (p, v) in enumerate(zip(self.params, self.values, strict=True)):
            if p.shape != v.shape:
                padded = v.new_zeros(p.shape)
                padded[tuple(slice(0, n) for n in v.shape)] = v
                self.values[i] = padded


@dataclass
class BestWeights:
    """The snapshot of the best validation score offered so far (higher is better)."""

    snapshot: WeightSnapshot | None = None
    score: float | None = None

    def offer(self, score: float, params: list[nn.Parameter]) -> bool:
        """Snapshot `params` if `score` beats the best so far (or none was taken); True if taken."""
        if self.score is not None and score <= self.score:
            return False
        self.snapshot, self.score = WeightSnapshot.take(params), score
        return True

    def clear(self) -> None:
        """Drop the snapshot and the score."""
        self.snapshot, self.score = None, None

    def state_dict(self) -> dict[str, object]:
        """The snapshot's values (None when none is held) and its score."""
        return {"values": None if self.snapshot is None else self.snapshot.values, "score": self.score}

    def load_state_dict(self, state: dict[str, object], params: list[nn.Parameter]) -> None:
        """Hold `state`'s values as a snapshot of `params` (moved to their device), and its score."""
        values = state["values"]
        self.snapshot = (
            None
            if values is None
            else WeightSnapshot(list(params), [v.to(p.device) for v, p in zip(values, params, strict=True)])
        )
        self.score = state["score"]
