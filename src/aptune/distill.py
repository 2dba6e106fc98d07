"""Efficient self-distillation (apt-method.md section 7).

The teacher is the student itself: the frozen weights are shared and the teacher uses a snapshot of
the trainable weights (adapters, task head; see `snapshot.py`), run under `no_grad`. Which snapshot,
and whether the teacher pass uses the current masks, is the training loop's protocol (config
`distill.teacher`, `distill.teacher_masks`). Structured pruning never removes a whole layer (every
layer keeps at least one head and one neuron), so the closest non-pruned student layer of teacher
layer i is layer i itself.

    L = mu * (a_pred * L_pred + a_layer * L_layer) + (1 - mu) * L_task

L_pred is the temperature-softened KL divergence times T^2 and a scale (the reference: T = 2/3,
scale 10); L_layer is the MSE between the teacher's hidden states and a learnable map Tr of the
student's (identity plus a low-rank update), over the retained hidden dimensions.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .adapter import AptLinear


def _blocks(num_layers: int, samples: int) -> list[range]:
    """`min(samples, num_layers)` consecutive, near-equal blocks of layers covering all of them."""
    count = min(samples, num_layers)
    bounds = [round(k * num_layers / count) for k in range(count + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def teacher_layers(num_layers: int, samples: int = 4) -> list[int]:
    """One layer per block of `num_layers / samples` layers: the last layer of each block."""
    return [block[-1] for block in _blocks(num_layers, samples)]


def sample_teacher_layers(num_layers: int, generator: torch.Generator, samples: int = 4) -> list[int]:
    """One layer drawn uniformly from each block of `num_layers / samples` layers (the reference's
    per-step resampling); the blocks are those of `teacher_layers`."""
    return [
        block[int(torch.randint(len(block), (1,), generator=generator))]
        for block in _blocks(num_layers, samples)
    ]


def prediction_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, scale: float = 1.0
) -> torch.Tensor:
    """scale * T^2 * KL(teacher || student) of temperature-softened logits (batch mean)."""
    t = temperature
    log_p = F.log_softmax(student.float() / t, dim=-1)  # (B, K)
    q = F.softmax(teacher.float() / t, dim=-1)  # (B, K)
    return F.kl_div(log_p, q, reduction="batchmean") * (t * t * scale)


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
