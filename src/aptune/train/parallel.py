"""Data parallelism without DDP: one process per device, each on its share of every batch.

The model is not wrapped in DDP: pruning and rank growth change parameter shapes, which DDP's
gradient buckets cannot follow. Instead each process runs its share of the global batch, the
trainable gradients are averaged with one all-reduce, and every change of shape or of mask targets
is checked to be identical in all processes (a checksum compared across them). In a single process
every method here is a no-op.
"""

from __future__ import annotations

import hashlib

import torch
from accelerate import Accelerator
from torch import nn

from ..errors import AptuneError


class ReplicaMismatch(AptuneError):
    """The processes of a data-parallel run hold different state."""


class Replicas:
    """The processes of one run, through accelerate; counts the consistency checks passed."""

    def __init__(self, accelerator: Accelerator):
        self.acc = accelerator
        self.world = accelerator.num_processes
        self.checks = 0

    def shard(self, examples: list) -> tuple[list, float]:
        """This process's share of a global batch and its loss weight, `n_rank * N / n`, so that the
        mean of the processes' weighted losses is the mean loss of the whole batch. A process with
        no example of a short last batch runs one with weight 0."""
        if self.world == 1:
            return examples, 1.0
        share = examples[self.acc.process_index :: self.world]
        return (share, len(share) * self.world / len(examples)) if share else (examples[:1], 0.0)

    def average_gradients(self, params: list[nn.Parameter]) -> None:
        """Average the gradients of `params` over the processes with one all-reduce."""
        if self.world == 1:
            return
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        flat = self.acc.reduce(torch.cat([g.flatten() for g in grads]), reduction="mean")  # (P,)
        for p, chunk in zip(params, flat.split([g.numel() for g in grads]), strict=True):
            p.grad = chunk.view_as(p)  # views of the reduced buffer, which nothing else holds

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """`t` summed over the processes."""
        return self.acc.reduce(t, reduction="sum") if self.world > 1 else t

    def mean_terms(self, terms: dict[str, float]) -> dict[str, float]:
        """Loss terms averaged over the processes (what one process over the whole batch logs)."""
        if self.world == 1:
            return terms
        keys = sorted(terms)
        values = torch.tensor([terms[k] for k in keys], dtype=torch.float64, device=self.acc.device)
        return dict(zip(keys, self.acc.reduce(values, reduction="mean").tolist(), strict=True))

    def check(self, what: str, tensors: list[torch.Tensor], step: int) -> None:
        """Stop every process with a clear error unless all hold the same `tensors` (a checksum
        of their bytes is compared across processes)."""
        if self.world == 1:
            return
        digest = hashlib.sha256()
        for t in tensors:
            digest.update(t.detach().float().cpu().numpy().tobytes())
        value = int.from_bytes(digest.digest()[:7], "little")
        sums = self.acc.gather(torch.tensor([value], dtype=torch.int64, device=self.acc.device))
        if bool((sums != sums[0]).any()):
            raise ReplicaMismatch(
                f"the {self.world} processes hold different {what} at step {step} "
                f"(checksums {sums.tolist()}); the data-parallel run is inconsistent, so it stopped. "
                "Check that every process runs the same aptune, config and data"
            )
        self.checks += 1
