"""Efficient self-distillation (apt-method.md section 7).

The teacher is the student itself: the frozen weights are shared, the teacher uses a snapshot of the
trainable weights (adapters, task head) taken at the last refresh, and it runs without the
in-progress masks under `no_grad`. Structured pruning never removes a whole layer (every layer keeps
at least one head and one neuron), so the closest non-pruned student layer of teacher layer i is
layer i itself.

    L = mu * (a_pred * L_pred + a_layer * L_layer) + (1 - mu) * L_task

L_pred is the temperature-softened KL divergence (times T^2); L_layer is the MSE between the
teacher's hidden states and a learnable map Tr of the student's (identity plus a low-rank update),
over the retained hidden dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .adapter import AptLinear


def teacher_layers(num_layers: int, samples: int = 4) -> list[int]:
    """One layer per block of `num_layers / samples` layers: the last layer of each block."""
    count = min(samples, num_layers)
    return sorted({round((k + 1) * num_layers / count) - 1 for k in range(count)})


def prediction_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of temperature-softened logits, times T^2 (batch mean)."""
    t = temperature
    log_p = F.log_softmax(student.float() / t, dim=-1)  # (B, K)
    q = F.softmax(teacher.float() / t, dim=-1)  # (B, K)
    return F.kl_div(log_p, q, reduction="batchmean") * t * t


class LayerTransform(nn.Module):
    """Tr: the identity plus a trainable low-rank update, mapping student to teacher hidden states."""

    def __init__(self, hidden: int, rank: int = 8):
        super().__init__()
        identity = nn.Linear(hidden, hidden, bias=False)
        with torch.no_grad():
            identity.weight.copy_(torch.eye(hidden))
        self.map = AptLinear(identity, rank=rank, alpha=rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(x)


def layer_loss(
    student: list[torch.Tensor],
    teacher: list[torch.Tensor],
    transforms: nn.ModuleList,
    keep: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """Sum over sampled layers of MSE(Tr(H_s), H_t) over real tokens and retained hidden dims.

    student/teacher: per sampled layer (B, T, d); keep: (d,) bool; attention_mask: (B, T).
    """
    weights = attention_mask.to(student[0].dtype)[..., None] * keep.to(student[0].dtype)  # (B, T, d)
    denom = weights.sum().clamp_min(1.0)
    total = student[0].new_zeros(())
    for s, t, tr in zip(student, teacher, transforms, strict=True):
        diff = (tr(s.float()) - t.float()) * weights  # (B, T, d)
        total = total + diff.pow(2).sum() / denom
    return total


@dataclass
class TeacherSnapshot:
    """Copies of the trainable tensors that define the teacher; swapped in for teacher passes."""

    params: list[nn.Parameter]
    values: list[torch.Tensor]

    @classmethod
    def take(cls, params: list[nn.Parameter]) -> TeacherSnapshot:
        """Snapshot the current values of `params`."""
        return cls(params=list(params), values=[p.detach().clone() for p in params])

    def swap(self) -> None:
        """Exchange the live values and the snapshot (call twice to restore)."""
        for i, p in enumerate(self.params):
            live = p.data
            p.data = self.values[i]
            self.values[i] = live
