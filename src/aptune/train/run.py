"""The APT algorithm of one run, in the order it happens.

warm-up: train adapters (and the task head) with all masks at 1
every step from `update_frequency` steps before start to end: per-batch salience -> smoothed scores
every `update_frequency` steps in [start, end]:
    validation: a student better than the teacher (scored again now) becomes it (distill.teacher: best)
    remove blocks whose masks reached hard 0 (optimizer state and weight copies sliced)
    mask search under rho_t * C_0 on the smoothed scores -> new mask targets
    grow the most important adapters up to the tuning budget
every step in the pruning window and after it: masks decay toward their targets
loss = mu * (a_pred * L_pred + a_layer * L_layer) + (1 - mu) * L_task
after end: masks harden and their blocks are removed; distil from the frozen teacher (mu = 1)
recovery (after distillation): best validation state since pruning, fresh AdamW and schedule at
    recovery_lr_scale x the peak rate, task loss only
finally: hard masks, physical removal, adapters merged

Every removal of blocks goes through `apply_cut`, in training and when a checkpoint is restored:
the model, the optimizer state, the masks and scores (`Pruner.cut`), the teacher and best-state
copies and the distillation maps are sliced together.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import transformers
from accelerate import Accelerator
from torch import nn

from ..adapter import AptLinear, attach_adapters, merge_adapters
from ..blocks import MaskPlan
from ..config import AptuneConfig
from ..families import family_for
from ..growth import AdapterImportance, adapter_params, apply_growth, plan_growth, rank_costs
from ..pruner import Cut, Pruner, keeps_all
from ..schedule import (
    distill_weight,
    is_replan_step,
    phase_steps,
    retain_ratio,
    spread_replans,
    tuning_budget,
)
from ..shrink import first_k_plan, shapes_dict
from ..snapshot import BestWeights, WeightSnapshot
from ..timing import hold_freed_memory
from .distillation import SelfDistillation
from .memory import StepMemory, current_memory_mb, release_freed_memory
from .outputs import DistillStatus, PruningStatus, StepRecord
from .parallel import Replicas
from .setup import (
    enable_checkpointing,
    float32_head,
    make_latency_model,
    make_optimizer,
    make_scaler,
    make_scheduler,
)
from .tasks import Objective

log = logging.getLogger("aptune")

FINAL_SPEED_TRIES = 3
"""Speed checks at the final re-plan: its scores are final, so repeated checks converge."""


class NonFiniteLoss(ArithmeticError):
    """The loss of a step is nan or infinite."""


class AptRun:
    """State and steps of one APT fine-tuning run (see the module docstring for the algorithm)."""

    def __init__(
        self,
        cfg: AptuneConfig,
        model: nn.Module,
        tokenizer,
        objective: Objective | None,
        accelerator: Accelerator,
        steps: tuple[int, int] | None = None,
    ):
        """`steps` is (total steps, steps per epoch); None derives them from the objective's
        training split and `cfg.train` (a run hosted by a `transformers.Trainer` passes its own)."""
        self.cfg, self.tokenizer, self.objective, self.acc = cfg, tokenizer, objective, accelerator
        if accelerator.device.type == "cpu" and cfg.train.hold_freed_memory:  # steps reuse the pages
            hold_freed_memory()  # of the activations they free instead of faulting them in anew
        self.replicas = Replicas(accelerator)
        self.family = family_for(model)
        self.model = model.to(accelerator.device)
        self.initial_shapes = shapes_dict(model, self.family)
        self.latency, self.latency_cached, self.speed = make_latency_model(
            cfg, self.model, objective, tokenizer, self.replicas.world
        )
        self.total_before = sum(p.numel() for p in model.parameters())
        self.adapters = self._setup_trainable()
        if cfg.train.gradient_checkpointing:
            enable_checkpointing(self.model)
        self.set_window(*(steps or data_steps(cfg, objective)))
        self.pruner = self._make_pruner()
        tuning = cfg.tuning.enabled and self.pruner is not None and bool(self.adapters)
        self.importance = AdapterImportance(cfg.tuning.momentum_importance) if tuning else None
        self.initial_adapter_params = adapter_params(self.adapters)
        self.distilling = (
            cfg.distill.enabled
            and self.pruner is not None
            and cfg.model.finetune == "adapters"
            and not cfg.pruning.before_tuning  # a model pruned up front has no unpruned teacher
        )
        self.distill = SelfDistillation(
            cfg.distill, self.family, self.model, cfg.train.seed, self.distilling, accelerator.device
        )
        self.optimizer = self._make_optimizer()
        self.scheduler = make_scheduler(self.optimizer, cfg.train, self.total_steps)
        self.scaler = make_scaler(cfg.train, accelerator.device)
        self.best_after = BestWeights()
        """The best validation state since the masks reached their final targets (recovery)."""
        self.recovering = False
        self.step_memory = StepMemory(accelerator.device)
        self.measured_memory: tuple[int, dict[str, float]] = (-1, {})
        """The step after which `step_memory` last measured, and what it measured."""
        self.pending_eval: dict[str, float] | None = None
        """A validation result taken between steps (teacher selection, recovery) for the history."""

    # ---- setup -------------------------------------------------------------------------------
    def _setup_trainable(self) -> dict[str, AptLinear]:
        m, model = self.cfg.model, self.model
        if m.finetune == "full":
            model.requires_grad_(True)
            return {}
        model.requires_grad_(False)
        a = m.adapter
        slots = self.family.adapter_slots(model, list(a.mha_components), list(a.ffn_components))
        adapters = attach_adapters(slots, a.rank, a.alpha, a.dropout, a.init)
        for head in self.family.task_head(model):
            head.requires_grad_(True)
            if m.dtype != "float32":
                float32_head(head)
        return adapters

    def set_window(self, total_steps: int, steps_per_epoch: int) -> None:
        """The run's length, and the steps where pruning, distillation and recovery start and end."""
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        p = self.cfg.pruning
        self.start, self.end, self.distill_end = phase_steps(
            p.start_step, p.end_step, self.cfg.distill.after_pruning, total_steps
        )
        self.collect_from = max(0, self.start - p.update_frequency)
        self.speed_check_steps = spread_replans(self.start, self.end, p.update_frequency, p.speed_checks)

    def _make_pruner(self) -> Pruner | None:
        if not self.cfg.pruning.enabled or self.target_sparsity == 0:
            return None
        allreduce = self.replicas.sum if self.replicas.world > 1 else None
        return Pruner(
            self.model,
            self.cfg.pruning,
            allreduce=allreduce,
            grad_scale=1 / self.replicas.world,
            cost=self.latency,
        )

    @property
    def target_sparsity(self) -> float:
        """The fraction of the budget removed by the end of pruning: of the prunable parameters, or
        with `pruning.target_speedup` of the predicted latency (1 - 1 / speed-up, as the speed checks
        have rescaled it)."""
        return 1 - self.speed.retain if self.speed is not None else self.cfg.pruning.target_sparsity

    def trainable(self) -> list[nn.Parameter]:
        """The parameters that train (adapters and task head, or every weight), in model order."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def _stepped(self) -> list[nn.Parameter]:
        """Every parameter the optimizer steps: the trainable weights and the distillation maps."""
        return [*self.trainable(), *self.distill.transforms.parameters()]

    def _make_optimizer(self, scale: float = 1.0) -> torch.optim.AdamW:
        head_ids = {id(p) for h in self.family.task_head(self.model) for p in h.parameters()}
        body = [p for p in self.trainable() if id(p) not in head_ids]
        head = [p for p in self.trainable() if id(p) in head_ids]
        body += self.distill.transforms.parameters()
        return make_optimizer(self.cfg.train, body, head, scale)

    @property
    def recovery_start(self) -> int | None:
        """The first step of the recovery phase (None when the run has none)."""
        d = self.cfg.distill
        first = self.distill_end + 1
        return first if self.distilling and d.recovery and first < self.total_steps else None

    def start_recovery(self) -> None:
        """Fresh AdamW at recovery_lr_scale x the rates and a fresh schedule to the end of training."""
        self.optimizer = self._make_optimizer(self.cfg.distill.recovery_lr_scale)
        self.scheduler = make_scheduler(
            self.optimizer, self.cfg.train, self.total_steps - self.recovery_start
        )
        self.recovering = True

    def schedule_problems(self) -> list[str]:
        """Why the pruning schedule does not fit the run's steps (empty when it does)."""
        if self.pruner is None or self.cfg.pruning.before_tuning:
            return []
        p = self.cfg.pruning
        decay_steps = math.ceil(1 / p.mask_decay_rate)
        if self.end + decay_steps < self.total_steps:
            return []
        return [
            f"the pruning schedule does not fit {self.total_steps} steps: the last re-plan is at step "
            f"{self.end + 1} and masks need {decay_steps} steps (1 / pruning.mask_decay_rate) to reach "
            "their targets, so blocks are only removed by the final cut and the model never trains "
            "without them; train longer (train.epochs / train.max_steps), end pruning earlier "
            "(pruning.end_step) or raise pruning.mask_decay_rate"
        ]

    # ---- one step ----------------------------------------------------------------------------
    def mu(self, step: int) -> float:
        """Distillation weight at `step`: ramps over the pruning window, then holds, then 0."""
        if not self.distilling or step > self.distill_end:
            return 0.0
        return (
            distill_weight(step, self.start, self.end) if self.end > self.start else float(step >= self.start)
        )

    def teacher_outputs(self, inputs: dict[str, torch.Tensor]) -> transformers.modeling_outputs.ModelOutput:
        """The teacher's outputs (hidden states included) on `inputs` (`SelfDistillation`)."""
        return self.distill.teacher_outputs(self.model, self.pruner.masks, inputs, self.acc.autocast)

    def collecting(self, step: int) -> bool:
        """Whether `step` feeds salience and adapter importance (up to the last re-plan)."""
        return self.pruner is not None and self.collect_from <= step <= self.end

    def encode(self, examples: list) -> dict[str, torch.Tensor]:
        """A batch of `examples` as model inputs (labels included) on the run's device."""
        enc = self.objective.encode(self.tokenizer, examples, self.cfg.data.max_length)
        return {k: v.to(self.acc.device) for k, v in enc.items()}

    def distilling_at(self, step: int) -> bool:
        """Whether the loss of `step` mixes in the teacher (mu > 0 and a teacher is held)."""
        return self.mu(step) > 0 and self.distill.teacher.snapshot is not None

    def _losses(self, enc: dict[str, torch.Tensor], labels: torch.Tensor, step: int):
        """The step's loss and its logged terms: task loss, or the distillation mix at mu > 0."""
        teacher = self.teacher_outputs(enc) if self.distilling_at(step) else None
        with self.acc.autocast():
            out = self.model(**enc, output_hidden_states=teacher is not None)
            task_loss = self.objective.loss(out.logits, labels)
            if teacher is None:
                return task_loss, {"task_loss": task_loss.item(), "mu": 0.0}
            return self.distill_mix(out, teacher, enc, task_loss, step)

    def distill_mix(self, out, teacher, enc: dict[str, torch.Tensor], task_loss: torch.Tensor, step: int):
        """`mu * (a_pred * L_pred + a_layer * L_layer) + (1 - mu) * L_task` from the student's and the
        teacher's outputs on `enc` (hidden states included), and its logged terms."""
        keep = self.pruner.masks.hidden > 0  # (d,)
        return self.distill.loss(out, teacher, enc, task_loss, step, self.mu(step), keep)

    def train_step(self, examples: list, step: int) -> dict[str, float]:
        """Forward, losses, backward and optimizer step on one batch; returns the loss terms.

        A step that ends on a history line (every `train.log_every`) measures its tensor memory
        for that line (`StepMemory`). The model trains in train mode (dropout on), whatever
        evaluation or loading left it in. Under fp16 the loss is scaled for backward; the gradients
        are unscaled before salience, adapter importance and clipping read them, and a step whose
        gradients overflowed changes no weight, score or schedule (the scaler lowers its scale and
        the next step tries again).
        """
        if (step + 1) % self.cfg.train.log_every:
            return self._train_step(examples, step)
        with self.measuring(step):
            return self._train_step(examples, step)

    @contextmanager
    def measuring(self, step: int) -> Iterator[None]:
        """Measure the tensor memory of step `step`, run inside, for the history line after it
        (`StepMemory`; on a CPU the step calls `step_memory.forward_ended()` before backward)."""
        with self.step_memory.step(self._held_tensors) as measured:
            yield
        self.measured_memory = (step + 1, measured)

    def _train_step(self, examples: list, step: int) -> dict[str, float]:
        self.model.train()
        self.observe(step)
        examples, weight = self.replicas.shard(examples)
        enc = self.encode(examples)
        labels = enc.pop("labels")
        loss, terms = self._losses(enc, labels, step)
        self.step_memory.forward_ended()
        if not torch.isfinite(loss):  # stop before a non-finite gradient reaches any weight
            raise NonFiniteLoss(f"the loss is {loss.item()} at step {step + 1} (terms: {terms})")
        self.scaler.scale(loss * weight).backward()
        params = self._stepped()
        self.replicas.average_gradients(params)
        self.scaler.unscale_(self.optimizer)
        finite = not self.scaler.is_enabled() or _finite_gradients(params)
        self.take_gradients(step, finite)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if finite:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"] = loss.item()
        if self.scaler.is_enabled():
            terms["skipped"] = float(not finite)
        return self.replicas.mean_terms(terms)

    def _held_tensors(self) -> Iterator[torch.Tensor]:
        """Every tensor the run holds between steps: weights and buffers, distillation maps,
        optimizer state and weight copies."""
        yield from self.model.parameters()
        yield from self.model.buffers()
        yield from self.distill.transforms.parameters()
        for state in self.optimizer.state.values():
            yield from (v for v in state.values() if isinstance(v, torch.Tensor))
        for snapshot in self.snapshots():
            yield from snapshot.values

    def observe(self, step: int) -> None:
        """Let the mask hooks collect salience in the coming batch's backward pass when `step` feeds
        the scores (a model pruned up front scores nothing)."""
        if self.pruner is None:
            return
        salience = self.collecting(step) and not self.cfg.pruning.before_tuning
        self.pruner.hooks.observer = self.pruner.collector if salience else None
        self.pruner.collector.grad_scale = 1 / (self.replicas.world * self.scaler.get_scale())

    def take_gradients(self, step: int, finite: bool = True) -> None:
        """Fold the batch's salience and adapter importance into the smoothed scores: after backward
        and the gradient average, before clipping. A batch whose gradients are not `finite` is dropped."""
        if not self.collecting(step):
            return
        if not self.cfg.pruning.before_tuning:
            if finite:
                self.pruner.fold_batch()
            else:
                self.pruner.collector.reset()
        if finite and self.importance is not None:
            self.importance.accumulate(self.adapters)

    # ---- pruning and growth between steps ---------------------------------------------------
    def prune_before_tuning(self, calibration: list[list]) -> None:
        """The paper's mode for the largest models: salience from one pass over `calibration`
        batches, then hard pruning to the target sparsity before any tuning step."""
        self.model.train()
        self.pruner.hooks.observer = self.pruner.collector
        for examples in calibration:
            enc = self.encode(examples)
            labels = enc.pop("labels")
            with self.acc.autocast():
                loss = self.objective.loss(self.model(**enc).logits, labels)
            loss.backward()
            self.pruner.fold_batch(mean=True)
        self.optimizer.zero_grad(set_to_none=True)
        self.pruner.masks.set_hard(self.pruner.plan(1 - self.target_sparsity))
        self.shrink()
        self.pruner.hooks.observer = None

    def after_step(self, step: int) -> str | None:
        """Decay masks; at re-plan steps choose the teacher, shrink, re-plan and grow; start the
        recovery phase when distillation ends. Returns an event name if any."""
        if self.pruner is None:
            return None
        every = self.cfg.pruning.update_frequency
        if self.cfg.pruning.before_tuning:  # pruned already: only adapters grow
            if is_replan_step(step, self.start, self.end, every):
                self._grow(step)
                return "grow"
            return None
        if step > self.start:
            self.pruner.decay()
        event = None
        if is_replan_step(step, self.start, self.end, every) or step == self.end:
            self._replan(step)
            event = "replan"
        elif step > self.end and (step - self.end) % every == 0 and self.shrink():
            self.distill.take_latest(self.trainable())
            event = "shrink"
        if step + 1 == self.recovery_start:
            self.recover()
            event = "recovery"
        return event

    def _replan(self, step: int) -> None:
        if self.distill.chooses_by_validation:
            self.pending_eval = self.validate()
            self.distill.rescore(self.pruner.masks, lambda: self.score(self.validate()))
            self.distill.offer(self.score(self.pending_eval), self.trainable())
        if self.speed is not None and step in self.speed_check_steps:  # none with speed_checks 0
            self._check_speed(step)
        ratio = retain_ratio(step, self.start, self.end, self.target_sparsity)
        plan = self.pruner.replan(ratio)
        self.replicas.check("mask targets", [*plan.heads, *plan.neurons, plan.hidden], step + 1)
        self.shrink()
        self._grow(step)
        self.distill.take_latest(self.trainable())

    def _check_speed(self, step: int) -> None:
        """Time the plan for the final latency budget on this device and correct the budget; the
        final re-plan measures again (up to `FINAL_SPEED_TRIES` times) until it meets the request."""
        for _ in range(FINAL_SPEED_TRIES if step == self.end else 1):
            plan = self.pruner.plan(self.speed.retain)
            shapes = {"heads": plan.kept_heads, "neurons": plan.kept_neurons, "hidden_size": plan.kept_hidden}
            predicted = self.pruner.initial_cost / self.latency(*shapes.values())
            check = self.speed.check(step, shapes, predicted)
            log.info(
                "aptune: step %d speed check: the final plan measured %.2fx (predicted %.2fx, asked "
                "%.2fx); latency budget now %.3f of dense",
                step + 1,
                check.measured,
                check.predicted,
                self.speed.target,
                self.speed.retain,
            )
            if self.speed.met(check):
                return

    def validate(self) -> dict[str, float]:
        """An evaluation between steps (teacher selection, recovery): the validation split."""
        return self.evaluate(eval_split(self.objective))

    def score(self, metrics: dict[str, float]) -> float:
        """The headline metric of an evaluation, signed so that higher is better."""
        value = metrics[self.objective.metric]
        return value if self.objective.higher_is_better else -value

    def note_evaluation(self, metrics: dict[str, float]) -> None:
        """Offer a validation result of the current model as the recovery phase's starting point:
        only after pruning, once the masks equal their final targets, before recovery starts."""
        if self.recovery_start is None or self.recovering or not self.pruner.masks.is_hard():
            return
        self.best_after.offer(self.score(metrics), self.trainable())

    def recover(self) -> None:
        """Start the recovery phase: restore the best validation state seen since the masks
        reached their final targets (the current one counts), drop the teacher, reset AdamW."""
        self.pending_eval = self.validate()
        self.note_evaluation(self.pending_eval)
        if self.best_after.snapshot is not None:
            self.best_after.snapshot.restore()
        self.best_after.clear()
        self.distill.teacher.clear()
        self.start_recovery()

    def snapshots(self) -> list[WeightSnapshot]:
        """The weight copies held now (they follow every cut and growth of the model)."""
        return [b.snapshot for b in (self.distill.teacher, self.best_after) if b.snapshot is not None]

    def shrink(self) -> bool:
        """Remove the blocks whose masks reached hard 0 (see `apply_cut`); True if any."""
        plan = self.pruner.removable()
        if plan is None:
            return False
        self.apply_cut(plan)
        return True

    def apply_cut(self, plan: MaskPlan) -> Cut:
        """Remove every block `plan` does not keep: the model, the optimizer state, masks and scores,
        the teacher and best-state copies, and the distillation maps' hidden dims; the memory they
        held goes back to the system."""
        cut = self.pruner.cut(plan, self.optimizer)
        for snapshot in self.snapshots():
            snapshot.follow_cuts(cut.records)
        self.distill.follow_cut(plan.hidden, self.optimizer)
        release_freed_memory(self.acc.device)
        return cut

    def _grow(self, step: int) -> None:
        if self.importance is None:
            return
        t = self.cfg.tuning
        budget = tuning_budget(step, self.start, self.end, self.initial_adapter_params, t.max_tuning_ratio)
        ranks = {name: a.rank for name, a in self.adapters.items()}
        costs = rank_costs(self.adapters)
        self.grow_to(plan_growth(ranks, self.importance.value, costs, budget, t.max_rank), step)
        rank_vector = torch.tensor([a.rank for a in self.adapters.values()])
        self.replicas.check("adapter ranks", [rank_vector], step + 1)

    def grow_to(self, ranks: dict[str, int], step: int) -> None:
        """Grow adapters to `ranks` (optimizer state padded with zeros, weight copies too); the new
        rows are drawn from (seed, step), so every process draws the same."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.train.seed * 1000003 + step)
            apply_growth(self.adapters, ranks, self.optimizer)
        for snapshot in self.snapshots():
            snapshot.follow_growth()

    # ---- reading the run ---------------------------------------------------------------------
    def status(self, step: int) -> StepRecord:
        """The run's shape, sparsity and schedule after `step` steps, for a history line."""
        record = StepRecord(
            step=step,
            epoch=step / self.steps_per_epoch,
            lr=self.scheduler.get_last_lr()[0],
            adapter_params=adapter_params(self.adapters),
            ranks={name: a.rank for name, a in self.adapters.items()},
            memory={**current_memory_mb(self.acc.device), "peak_memory_mb": self.step_memory.peak_mb()},
        )
        measured_at, measured = self.measured_memory
        if measured_at == step:
            record.memory.update(measured)
        if self.distilling:
            record.distill = DistillStatus(self.distill.teacher.score, self.recovering)
        if self.pruner is not None:
            p, masks = self.pruner, self.pruner.masks
            record.pruning = PruningStatus(
                retain_target=retain_ratio(step, self.start, self.end, self.target_sparsity),
                retained=p.masked_params() / p.initial_params,
                physical=p.prunable_params() / p.initial_params,
                heads=[int((m > 0).sum()) for m in masks.heads],
                neurons=[int((m > 0).sum()) for m in masks.neurons],
                hidden=int((masks.hidden > 0).sum()),
            )
        return record

    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics of the current (masked) model on a split (in eval mode; the next step trains).

        Freed memory goes back to the system before and after: on a CPU the evaluation batches
        (another size than the training batches) otherwise grow the heap that the training steps
        keep (in the built-in MiniLM run each evaluation after the first cut raised the resident
        memory by 120-165 MB, and the last one set the run's peak)."""
        self.model.eval()
        release_freed_memory(self.acc.device)
        metrics = self.objective.evaluate(
            self.model,
            self.tokenizer,
            split,
            self.cfg.train.eval_batch_size,
            self.cfg.data.max_length,
            shard=(self.acc.process_index, self.acc.num_processes),
        )
        release_freed_memory(self.acc.device)
        return metrics

    def finish(self) -> None:
        """Hard masks, physical removal, hooks off, adapters merged."""
        if self.pruner is not None:
            self.pruner.harden()
            plan = self.pruner.removable(align=False)  # exactly the (aligned) targets: no zero block stays
            if plan is not None:
                self.apply_cut(plan)
            self.pruner.hooks.remove()
        merge_adapters(self.model)
        self.model.to(getattr(torch, self.cfg.model.dtype))  # float32 heads join the frozen dtype
        self.model.eval()
        self.replicas.check("final weights", list(self.model.state_dict().values()), self.total_steps)

    # ---- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        """Everything besides the model weights and the RNGs that continues this run exactly."""
        return {
            "shapes": shapes_dict(self.model, self.family),
            "ranks": {name: a.rank for name, a in self.adapters.items()},
            "importance": None if self.importance is None else self.importance.state_dict(),
            "pruner": None if self.pruner is None else self.pruner.state_dict(),
            **self.distill.state_dict(),
            "best_after": self.best_after.state_dict(),
            "recovering": self.recovering,
            "speed": None if self.speed is None else self.speed.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, object], step: int) -> None:
        """Bring this freshly built run to `state` (taken after `step` steps): the model takes the
        state's shapes through the same cut and growth paths as training; its weight values are the
        caller's to load afterwards."""
        plan = first_k_plan(self.family.inventory(self.model), state["shapes"])
        if not keeps_all(plan):
            self.apply_cut(plan)
        self.grow_to(state["ranks"], step)
        if state["recovering"]:
            self.start_recovery()  # its own optimizer and schedule, whose state is loaded next
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.importance is not None:
            self.importance.load_state_dict(state["importance"])
        if self.pruner is not None:
            self.pruner.load_state_dict(state["pruner"])
        if self.speed is not None:
            self.speed.load_state_dict(state["speed"])
        self.distill.load_state_dict(state, self.trainable())
        self.best_after.load_state_dict(state["best_after"], self.trainable())


def data_steps(cfg: AptuneConfig, objective: Objective) -> tuple[int, int]:
    """(total steps, steps per epoch) of a run over the objective's training split."""
    t = cfg.train
    per_epoch = math.ceil(len(objective.splits["train"]) / t.batch_size)
    return t.max_steps or max(1, math.ceil(t.epochs * per_epoch)), per_epoch


def eval_split(objective: Objective) -> str:
    """The split mid-run evaluations use: validation, or train when the task has none."""
    return "validation" if "validation" in objective.splits else "train"


@torch.no_grad()
def _finite_gradients(params: list[nn.Parameter]) -> bool:
    """True when no gradient of `params` holds an inf or nan."""
    grads = [p.grad for p in params if p.grad is not None]
    return bool(torch.stack([g.isfinite().all() for g in grads]).all()) if grads else True
