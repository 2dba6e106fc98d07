"""The block types every engine module shares: what a model holds, how salient each block is, and
which blocks a plan keeps.

Blocks are attention heads (per attention module), FFN neurons (per FFN) and hidden dimensions
(shared by all of them). These types hold plain counts and tensors, no module names: families
build inventories, salience fills scores, search turns both into plans, masks and shrinking apply
plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["BlockInventory", "BlockScores", "MaskPlan"]


@dataclass(frozen=True)
class BlockInventory:
    """Current prunable structure of a model (counts only, no module names).

    ``heads`` has one count per attention module, ``neurons`` one per FFN. ``head_cost`` is the
    parameter count of one head per retained hidden dim (``4 * d_h`` for MHA with q, k, v, o);
    ``neuron_cost`` that of one FFN neuron (2, or 3 for a gated FFN).
    """

    heads: tuple[int, ...]
    neurons: tuple[int, ...]
    hidden: int
    head_cost: int
    neuron_cost: int

    def __post_init__(self) -> None:
        """Coerce counts to tuples of ints and validate them."""
        object.__setattr__(self, "heads", tuple(int(n) for n in self.heads))
        object.__setattr__(self, "neurons", tuple(int(n) for n in self.neurons))
        if not self.heads or not self.neurons:
            raise ValueError(
                f"need >= 1 attention module and >= 1 FFN, "
                f"got {len(self.heads)} head counts and {len(self.neurons)} neuron counts"
            )
        if min(self.heads) < 0 or min(self.neurons) < 0:
            raise ValueError(f"block counts must be >= 0, got heads={self.heads}, neurons={self.neurons}")
        if self.hidden < 1 or self.head_cost < 1 or self.neuron_cost < 1:
            raise ValueError(
                f"hidden, head_cost and neuron_cost must be >= 1, got hidden={self.hidden}, "
                f"head_cost={self.head_cost}, neuron_cost={self.neuron_cost}"
            )

    def hidden_cost(self) -> int:
        """Parameters of one hidden dim: ``sum_a head_cost * n_h^a + sum_f neuron_cost * n_f^f``."""
        return self.head_cost * sum(self.heads) + self.neuron_cost * sum(self.neurons)

    def prunable_params(
        self,
        heads: Sequence[int] | None = None,
        neurons: Sequence[int] | None = None,
        hidden: int | None = None,
    ) -> int:
        """Prunable parameters ``C = d' * (sum_a head_cost * n_h'^a + sum_f neuron_cost * n_f'^f)``.

        Arguments default to the inventory's own counts.
        """
        heads = self.heads if heads is None else heads
        neurons = self.neurons if neurons is None else neurons
        hidden = self.hidden if hidden is None else hidden
        if len(heads) != len(self.heads) or len(neurons) != len(self.neurons):
            raise ValueError(
                f"need {len(self.heads)} head and {len(self.neurons)} neuron counts, "
                f"got {len(heads)} and {len(neurons)}"
            )
        per_dim = self.head_cost * sum(heads) + self.neuron_cost * sum(neurons)
        return int(hidden) * int(per_dim)


@dataclass
class BlockScores:
    """Salience of every block; shapes must match a :class:`BlockInventory`."""

    heads: list[torch.Tensor]  # per attention module, (n_h^a,)
    neurons: list[torch.Tensor]  # per FFN, (n_f^f,)
    hidden: torch.Tensor  # (d,)

    def cpu(self) -> BlockScores:
        """The scores as fp32 tensors on the CPU, moved in one transfer (one device sync, not one per
        block set)."""
        parts = [*self.heads, *self.neurons, self.hidden]
        flat = torch.cat([p.float() for p in parts]).cpu()  # (sum of sizes,)
        pieces = list(flat.split([p.numel() for p in parts]))
        n_h, n_f = len(self.heads), len(self.neurons)
        return BlockScores(heads=pieces[:n_h], neurons=pieces[n_h : n_h + n_f], hidden=pieces[-1])


@dataclass
class MaskPlan:
    """Target keep-masks (True = keep) and the prunable parameter count they retain."""

    heads: list[torch.Tensor]  # per attention module, bool (n_h^a,)
    neurons: list[torch.Tensor]  # per FFN, bool (n_f^f,)
    hidden: torch.Tensor  # bool (d,)
    params: int

    @property
    def kept_heads(self) -> tuple[int, ...]:
        """Kept heads per attention module."""
        return tuple(int(m.sum()) for m in self.heads)

    @property
    def kept_neurons(self) -> tuple[int, ...]:
        """Kept FFN neurons per FFN."""
        return tuple(int(m.sum()) for m in self.neurons)

    @property
    def kept_hidden(self) -> int:
        """Kept hidden dims."""
        return int(self.hidden.sum())

    def sparsity_vs(self, total: int) -> float:
        """Sparsity of the plan relative to ``total`` prunable params: ``1 - params / total``."""
        if total <= 0:
            raise ValueError(f"total must be > 0, got {total}")
        return 1.0 - self.params / total
