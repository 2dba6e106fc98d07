"""One run's self-distillation (apt-method.md section 7): the teacher's weights, the layer maps Tr,
the layers distilled at a step and the loss mix; the component owns this state (`state_dict`).

The losses are `distill.py`'s. When a teacher is offered or taken, the mu schedule and the recovery
phase are the run's order (`AptRun`); this module only says what each of those does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
import transformers
from torch import nn

from ..config import DistillConfig
from ..distill import LayerTransform, layer_loss, prediction_loss, sample_teacher_layers, teacher_layers
from ..families.base import ModelFamily
from ..masks import MaskState
from ..shrink import SliceRecord, slice_linear, slice_optimizer_state
from ..snapshot import BestWeights, WeightSnapshot


class SelfDistillation:
    """The teacher (a `BestWeights` of the trainable weights), the maps Tr from student to teacher
    hidden states and the loss `mu * (a_pred * L_pred + a_layer * L_layer) + (1 - mu) * L_task`.

    A disabled component distils no layer and holds no map or teacher, so a run without
    distillation has the same state (and checkpoint layout) with nothing in it.
    """

    def __init__(
        self,
        cfg: DistillConfig,
        family: ModelFamily,
        model: nn.Module,
        seed: int,
        enabled: bool,
        device: torch.device,
    ):
        self.cfg, self.family, self.seed, self.enabled = cfg, family, seed, enabled
        self.num_layers = family.num_layers(model)  # pruning keeps every layer
        self.layers = teacher_layers(self.num_layers) if enabled else []
        """The distilled layers (fixed; per step they are redrawn with `distill.resample_layers`)."""
        hidden = family.inventory(model).hidden
        self.transforms = nn.ModuleList(LayerTransform(hidden) for _ in self.layers).to(device)
        self.teacher = BestWeights()
        """The teacher's weights, and the validation score that selected them."""

    def layers_at(self, step: int) -> list[int]:
        """The layers distilled at `step`: fixed, or drawn per step from (seed, step)."""
        if not self.cfg.resample_layers:
            return self.layers
        generator = torch.Generator().manual_seed(self.seed * 1000003 + step)
        return sample_teacher_layers(self.num_layers, generator)

    @property
    def chooses_by_validation(self) -> bool:
        """Whether the teacher is chosen by validation (the 'best' protocol): the run offers it the
        weights with their validation score at every re-plan of the pruning window."""
        return self.enabled and self.cfg.teacher == "best"

    def offer(self, score: float, trainable: list[nn.Parameter]) -> None:
        """The 'best' protocol: the current weights, validated at `score`, become the teacher if that
        beats the teacher's score."""
        self.teacher.offer(score, trainable)

    def take_latest(self, trainable: list[nn.Parameter]) -> None:
        """The 'latest' protocol: the current weights become the teacher (every re-plan and shrink)."""
        if self.enabled and self.cfg.teacher == "latest":
            self.teacher.snapshot = WeightSnapshot.take(trainable)

    def teacher_outputs(
        self,
        model: nn.Module,
        masks: MaskState,
        inputs: dict[str, torch.Tensor],
        autocast: Callable[[], AbstractContextManager],
    ) -> transformers.modeling_outputs.ModelOutput:
        """The teacher's outputs (hidden states included) on `inputs`: its weights swapped into
        `model`, in eval mode, under the current masks unless `distill.teacher_masks` is off."""
        with self.as_teacher(masks):
            model.eval()
            try:
                with torch.no_grad(), autocast():
                    return model(**inputs, output_hidden_states=True)
            finally:
                model.train()

    def rescore(self, masks: MaskState, score: Callable[[], float]) -> None:
        """With `distill.rescore_teacher`, the held teacher's score becomes `score()` taken as it runs
        now (the current masks and shapes), so a student that beats it at this sparsity replaces it."""
        if not self.cfg.rescore_teacher or self.teacher.snapshot is None:
            return
        with self.as_teacher(masks):
            self.teacher.score = score()

    @contextmanager
    def as_teacher(self, masks: MaskState) -> Iterator[None]:
        """The model as the teacher while inside: the teacher's weights swapped in, and the current
        masks on or off as `distill.teacher_masks` says; the student's weights and masks on exit."""
        snapshot = self.teacher.snapshot
        snapshot.swap()
        masks.enabled = self.cfg.teacher_masks
        try:
            yield
        finally:
            masks.enabled = True
            snapshot.swap()

    def loss(
        self,
        out,
        teacher,
        enc: dict[str, torch.Tensor],
        task_loss: torch.Tensor,
        step: int,
        mu: float,
        keep: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The mixed loss at `step` from the student's and the teacher's outputs on `enc` (hidden
        states included), over the retained hidden dims `keep` (d,) bool, and its logged terms."""
        d, states = self.cfg, self.family.distill_states
        pred = prediction_loss(out.logits, teacher.logits, d.temperature, d.pred_scale)
        layers = self.layers_at(step)
        student_h = [states(out)[i + 1] for i in layers]
        teacher_h = [states(teacher)[i + 1] for i in layers]
        layer = layer_loss(student_h, teacher_h, self.transforms, keep, enc[self.family.distill_mask_key])
        loss = mu * (d.pred_weight * pred + d.layer_weight * layer) + (1 - mu) * task_loss
        terms = {
            "task_loss": task_loss.item(),
            "mu": mu,
            "distill_pred": pred.item(),
            "distill_layer": layer.item(),
        }
        return loss, terms

    def follow_cut(self, keep_hidden: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Slice the maps Tr (and their optimizer state) to the hidden dims a cut keeps, (d,) bool."""
        if not self.transforms or bool(keep_hidden.all()):
            return
        keep = keep_hidden.nonzero().flatten()  # (d',)
        records: list[SliceRecord] = []
        for tr in self.transforms:
            slice_linear(tr.map, keep, "out", records)
            slice_linear(tr.map, keep, "in", records)
        slice_optimizer_state(optimizer, records)

    def state_dict(self) -> dict[str, object]:
        """The teacher's weights and score, and the maps' weights."""
        return {"teacher": self.teacher.state_dict(), "transforms": self.transforms.state_dict()}

    def load_state_dict(self, state: dict[str, object], trainable: list[nn.Parameter]) -> None:
        """Take `state`'s maps and teacher (a snapshot of `trainable`, the model's current shapes)."""
        self.transforms.load_state_dict(state["transforms"])
        self.teacher.load_state_dict(state["teacher"], trainable)
