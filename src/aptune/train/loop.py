"""The APT training loop, built on accelerate.

warm-up: train adapters (and the task head) with all masks at 1
every step from `update_frequency` steps before start to end: per-batch salience -> smoothed scores
every `update_frequency` steps in [start, end]:
    validation: a new best becomes the teacher (distill.teacher: best)
    remove blocks whose masks reached hard 0 (optimizer state and weight snapshots sliced)
    mask search under rho_t * C_0 on the smoothed scores -> new mask targets
    grow the most important adapters up to the tuning budget
every step in the pruning window and after it: masks decay toward their targets
loss = mu * (a_pred * L_pred + a_layer * L_layer) + (1 - mu) * L_task
after end: masks harden and their blocks are removed; distil from the frozen teacher (mu = 1)
recovery (after distillation): best validation state since pruning, fresh AdamW and schedule at
    recovery_lr_scale x the peak rate, task loss only
finally: hard masks, physical removal, adapters merged, evaluation, timing, export
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from torch import nn
from tqdm.auto import tqdm

from ..adapter import AptLinear, attach_adapters, merge_adapters
from ..assets import resolve_model_path
from ..config import AptuneConfig, ModelConfig, load_config, save_config
from ..distill import LayerTransform, layer_loss, prediction_loss, sample_teacher_layers, teacher_layers
from ..errors import AptuneError
from ..families import family_for, supported_model_types
from ..growth import AdapterImportance, adapter_params, apply_growth, plan_growth, rank_costs
from ..pruner import PruneOptions, Pruner
from ..schedule import (
    distill_weight,
    is_replan_step,
    resolve_step,
    retain_ratio,
    tuning_budget,
    warmup_linear_factor,
)
from ..shrink import SliceRecord, save_pruned, shapes_dict, slice_linear, slice_optimizer_state
from ..snapshot import BestWeights, WeightSnapshot
from .checkpoint import (
    CHECKPOINTS,
    CheckpointError,
    Progress,
    latest_checkpoint,
    read_state,
    remove_partial,
    restore,
    save_checkpoint,
)
from .data import batches
from .objective import Objective, load_objective
from .speed import inference_ms


class SetupError(AptuneError):
    """A run cannot start: the message names the problem and the fix."""


class TrainingError(AptuneError):
    """A run had to stop: the message names the step and how to continue."""


class NonFiniteLoss(ArithmeticError):
    """The loss of a step is nan or infinite."""


@dataclass
class RunResult:
    """Where a finished run wrote its files, and its metrics."""

    output_dir: Path
    model_dir: Path
    metrics: dict


def check_output_dir(path: Path, overwrite: bool) -> Path:
    """Refuse a file, or an existing non-empty directory unless `overwrite` is set; creates nothing."""
    if path.exists() and not path.is_dir():
        raise SetupError(f"output directory {path} exists and is a file; choose another --output-dir")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise SetupError(
            f"output directory {path} already exists and is not empty; pass --overwrite to replace "
            "its results, or choose another --output-dir"
        )
    return path


def load_model(model_cfg: ModelConfig, objective: Objective) -> tuple[nn.Module, object]:
    """Load the tokenizer and the model `objective` needs, checking the family is supported."""
    source = resolve_model_path(model_cfg.name_or_path)
    remote = model_cfg.trust_remote_code
    labels = getattr(objective, "label_names", [])
    if (
        model_cfg.num_labels is not None
        and model_cfg.head == "classifier"
        and model_cfg.num_labels != len(labels)
    ):
        raise SetupError(
            f"model.num_labels is {model_cfg.num_labels} but the training data has {len(labels)} labels "
            f"({', '.join(labels)}); remove model.num_labels or fix the data"
        )
    try:
        config = transformers.AutoConfig.from_pretrained(source, trust_remote_code=remote)
    except (OSError, ValueError) as exc:
        raise SetupError(
            f"cannot load model {model_cfg.name_or_path!r} ({exc}); set model.name_or_path to a local model "
            "directory, a hub name (with network access) or builtin:minilm"
        ) from exc
    if config.model_type not in supported_model_types():
        raise SetupError(
            f"model type {config.model_type!r} of {model_cfg.name_or_path!r} is not supported; aptune "
            f"supports {', '.join(supported_model_types())}"
        )
    model = objective.auto_class.from_pretrained(
        source, dtype=getattr(torch, model_cfg.dtype), trust_remote_code=remote, **objective.model_kwargs()
    )
    objective.bind(model)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=remote)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # decoder tokenizers often lack one
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:  # decoder classifiers find the last real token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _float32_head(head: nn.Module) -> None:
    """Train a head in float32 over half-precision frozen weights: its inputs follow its dtype."""
    head.float()

    def cast(module: nn.Module, args: tuple) -> tuple:
        dtype = next(module.parameters()).dtype
        return tuple(a.to(dtype) if torch.is_floating_point(a) else a for a in args)

    head.register_forward_pre_hook(cast)


def enable_checkpointing(model: nn.Module, use_reentrant: bool = False) -> None:
    """Recompute layer activations in the backward pass (transformers' layer checkpointing)."""
    kwargs = {"use_reentrant": use_reentrant}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _atomic_json(path: Path, payload: object) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


class AptRun:
    """State and steps of one APT fine-tuning run (see the module docstring for the algorithm)."""

    def __init__(
        self, cfg: AptuneConfig, model: nn.Module, tokenizer, objective: Objective, accelerator: Accelerator
    ):
        self.cfg, self.tokenizer, self.objective, self.acc = cfg, tokenizer, objective, accelerator
        self.family = family_for(model)
        self.model = model.to(accelerator.device)
        self.initial_shapes = shapes_dict(model, self.family)
        self.total_before = sum(p.numel() for p in model.parameters())
        self.adapters = self._setup_trainable()
        if cfg.train.gradient_checkpointing:
            enable_checkpointing(self.model)
        self._set_window()
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
        self.layers = teacher_layers(self.family.num_layers(model)) if self.distilling else []
        hidden = self.family.inventory(model).hidden
        self.transforms = nn.ModuleList(LayerTransform(hidden) for _ in self.layers).to(accelerator.device)
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        self.teacher = BestWeights()
        """The teacher's weights, and the validation score that selected them."""
        self.best_after = BestWeights()
        """The best validation state since the masks reached their final targets (recovery)."""
        self.recovering = False
        self.pending_eval: dict[str, float] | None = None
        """A validation result taken between steps (teacher selection, recovery) for the history."""
        self.replica_checks = 0
        """Cross-process consistency checks passed (data-parallel runs)."""

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
                _float32_head(head)
        return adapters

    def _set_window(self) -> None:
        t = self.cfg.train
        self.steps_per_epoch = math.ceil(len(self.objective.splits["train"]) / t.batch_size)
        self.total_steps = t.max_steps or max(1, math.ceil(t.epochs * self.steps_per_epoch))
        p = self.cfg.pruning
        last = self.total_steps - 1  # the final re-plan must happen inside the run
        self.start = min(resolve_step(p.start_step, self.total_steps), last)
        self.end = min(max(resolve_step(p.end_step, self.total_steps), self.start), last)
        self.distill_end = self.end + round(self.cfg.distill.after_pruning * (self.total_steps - self.end))
        self.collect_from = max(0, self.start - p.update_frequency)

    def _make_pruner(self) -> Pruner | None:
        if not self.cfg.pruning.enabled or self.cfg.pruning.target_sparsity == 0:
            return None
        world = self.acc.num_processes
        allreduce = (lambda t: self.acc.reduce(t, reduction="sum")) if world > 1 else None
        return Pruner(self.model, PruneOptions.from_config(self.cfg.pruning), allreduce, 1 / world)

    def trainable(self) -> list[nn.Parameter]:
        """The parameters that train (adapters and task head, or every weight), in model order."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def _make_optimizer(self, scale: float = 1.0) -> torch.optim.Optimizer:
        """AdamW over the trainable weights and distillation maps; `scale` multiplies the rates."""
        t = self.cfg.train
        head_ids = {id(p) for h in self.family.task_head(self.model) for p in h.parameters()}
        body = [p for p in self.trainable() if id(p) not in head_ids] + list(self.transforms.parameters())
        head = [p for p in self.trainable() if id(p) in head_ids]
        groups = [{"params": body, "lr": scale * t.learning_rate}]
        if head:
            groups.append({"params": head, "lr": scale * (t.head_learning_rate or t.learning_rate)})
        return torch.optim.AdamW(groups, weight_decay=t.weight_decay)

    def _make_scheduler(self, first: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
        """Linear warm-up/decay over the steps from `first` to the end of training."""
        total = self.total_steps - first
        warmup = round(self.cfg.train.warmup_ratio * total)
        return torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_linear_factor(s, warmup, total)
        )

    @property
    def recovery_start(self) -> int | None:
        """The first step of the recovery phase (None when the run has none)."""
        d = self.cfg.distill
        first = self.distill_end + 1
        return first if self.distilling and d.recovery and first < self.total_steps else None

    def start_recovery(self) -> None:
        """Fresh AdamW at recovery_lr_scale x the rates and a fresh schedule to the end of training."""
        self.optimizer = self._make_optimizer(self.cfg.distill.recovery_lr_scale)
        self.scheduler = self._make_scheduler(self.recovery_start)
        self.recovering = True

    # ---- one step ----------------------------------------------------------------------------
    def mu(self, step: int) -> float:
        """Distillation weight at `step`: ramps over the pruning window, then holds, then 0."""
        if not self.distilling or step > self.distill_end:
            return 0.0
        return (
            distill_weight(step, self.start, self.end) if self.end > self.start else float(step >= self.start)
        )

    def _teacher(self, inputs: dict[str, torch.Tensor]) -> transformers.modeling_outputs.ModelOutput:
        snapshot = self.teacher.snapshot
        snapshot.swap()
        self.pruner.masks.enabled = self.cfg.distill.teacher_masks
        self.model.eval()
        try:
            with torch.no_grad(), self.acc.autocast():
                return self.model(**inputs, output_hidden_states=True)
        finally:
            self.model.train()
            self.pruner.masks.enabled = True
            snapshot.swap()

    def collecting(self, step: int) -> bool:
        """Whether `step` feeds salience and adapter importance (up to the last re-plan)."""
        return self.pruner is not None and self.collect_from <= step <= self.end

    def distill_layers(self, step: int) -> list[int]:
        """The layers distilled at `step`: fixed, or drawn per step from (seed, step)."""
        if not self.cfg.distill.resample_layers:
            return self.layers
        generator = torch.Generator().manual_seed(self.cfg.train.seed * 1000003 + step)
        return sample_teacher_layers(self.family.num_layers(self.model), generator)

    def _batch(self, examples: list) -> dict[str, torch.Tensor]:
        enc = self.objective.encode(self.tokenizer, examples, self.cfg.data.max_length)
        return {k: v.to(self.acc.device) for k, v in enc.items()}

    def train_step(self, examples: list, step: int) -> dict[str, float]:
        """Forward, losses, backward and optimizer step on one batch; returns the loss terms.

        The model trains in train mode (dropout on), whatever evaluation or loading left it in.
        """
        self.model.train()
        window = self.collecting(step)
        salience = window and not self.cfg.pruning.before_tuning  # a model pruned up front scores nothing
        if self.pruner is not None:
            self.pruner.hooks.observer = self.pruner.collector if salience else None
        examples, weight = self._shard(examples)
        enc = self._batch(examples)
        labels = enc.pop("labels")
        mu = self.mu(step)
        teacher = self._teacher(enc) if mu > 0 and self.teacher.snapshot is not None else None
        with self.acc.autocast():
            out = self.model(**enc, output_hidden_states=teacher is not None)
            task_loss = self.objective.loss(out.logits, labels)
            terms = {"task_loss": task_loss.item(), "mu": mu if teacher is not None else 0.0}
            loss = task_loss
            if teacher is not None:
                d = self.cfg.distill
                pred = prediction_loss(out.logits, teacher.logits, d.temperature, d.pred_scale)
                keep = self.pruner.masks.hidden > 0
                states, layers = self.family.distill_states, self.distill_layers(step)
                student_h = [states(out)[i + 1] for i in layers]
                teacher_h = [states(teacher)[i + 1] for i in layers]
                tokens = enc[self.family.distill_mask_key]
                layer = layer_loss(student_h, teacher_h, self.transforms, keep, tokens)
                loss = mu * (d.pred_weight * pred + d.layer_weight * layer) + (1 - mu) * task_loss
                terms.update(distill_pred=pred.item(), distill_layer=layer.item())
        if not torch.isfinite(loss):  # stop before a non-finite gradient reaches any weight
            raise NonFiniteLoss(f"the loss is {loss.item()} at step {step + 1} (terms: {terms})")
        self.acc.backward(loss * weight)
        self._average_gradients()
        if salience:
            self.pruner.fold_batch()
        if window and self.importance is not None:
            self.importance.accumulate(self.adapters)
        self.acc.clip_grad_norm_([*self.trainable(), *self.transforms.parameters()], 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"] = loss.item()
        return self._mean_terms(terms)

    # ---- data parallelism (one process per device; no-ops in a single process) --------------
    def _shard(self, examples: list) -> tuple[list, float]:
        """This process's share of a global batch and its loss weight, `n_rank * N / n`, so that the
        mean of the processes' weighted losses is the mean loss of the whole batch. A process with
        no example of a short last batch runs one with weight 0."""
        world, rank = self.acc.num_processes, self.acc.process_index
        if world == 1:
            return examples, 1.0
        share = examples[rank::world]
        return (share, len(share) * world / len(examples)) if share else (examples[:1], 0.0)

    def _average_gradients(self) -> None:
        """Average the trainable gradients over the processes with one all-reduce through
        accelerate (the frozen weights have none). The model is not wrapped in DDP: pruning and
        rank growth change parameter shapes, which DDP's gradient buckets cannot follow."""
        if self.acc.num_processes == 1:
            return
        params = [*self.trainable(), *self.transforms.parameters()]
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        flat = self.acc.reduce(torch.cat([g.flatten() for g in grads]), reduction="mean")  # (P,)
        for p, chunk in zip(params, flat.split([g.numel() for g in grads]), strict=True):
            p.grad = chunk.view_as(p)  # views of the reduced buffer, which nothing else holds

    def _mean_terms(self, terms: dict[str, float]) -> dict[str, float]:
        """Loss terms averaged over the processes (what one process over the whole batch logs)."""
        if self.acc.num_processes == 1:
            return terms
        keys = sorted(terms)
        values = torch.tensor([terms[k] for k in keys], dtype=torch.float64, device=self.acc.device)
        return dict(zip(keys, self.acc.reduce(values, reduction="mean").tolist(), strict=True))

    def check_replicas(self, what: str, tensors: list[torch.Tensor], step: int) -> None:
        """Stop every process with a clear error unless all hold the same `tensors` (a checksum
        of their bytes is compared across processes)."""
        if self.acc.num_processes == 1:
            return
        digest = hashlib.sha256()
        for t in tensors:
            digest.update(t.detach().float().cpu().numpy().tobytes())
        value = int.from_bytes(digest.digest()[:7], "little")
        sums = self.acc.gather(torch.tensor([value], dtype=torch.int64, device=self.acc.device))
        if bool((sums != sums[0]).any()):
            raise TrainingError(
                f"the {self.acc.num_processes} processes hold different {what} at step {step} "
                f"(checksums {sums.tolist()}); the data-parallel run is inconsistent, so it stopped. "
                "Check that every process runs the same aptune, config and data"
            )
        self.replica_checks += 1

    # ---- pruning and growth between steps ---------------------------------------------------
    def prune_before_tuning(self, calibration: list[list]) -> None:
        """The paper's mode for the largest models: salience from one pass over `calibration`
        batches, then hard pruning to the target sparsity before any tuning step."""
        self.model.train()
        self.pruner.hooks.observer = self.pruner.collector
        for examples in calibration:
            enc = self._batch(examples)
            labels = enc.pop("labels")
            with self.acc.autocast():
                loss = self.objective.loss(self.model(**enc).logits, labels)
            self.acc.backward(loss)
            self.pruner.fold_batch(mean=True)
        self.optimizer.zero_grad(set_to_none=True)
        self.pruner.masks.set_hard(self.pruner.plan(1 - self.cfg.pruning.target_sparsity))
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
            self._latest_teacher()
            event = "shrink"
        if step + 1 == self.recovery_start:
            self.recover()
            event = "recovery"
        return event

    def _replan(self, step: int) -> None:
        if self.distilling and self.cfg.distill.teacher == "best":
            self.pending_eval = self.evaluate(_eval_split(self.objective))
            self.teacher.offer(self._score(self.pending_eval), self.trainable())
        ratio = retain_ratio(step, self.start, self.end, self.cfg.pruning.target_sparsity)
        plan = self.pruner.replan(ratio)
        self.check_replicas("mask targets", [*plan.heads, *plan.neurons, plan.hidden], step + 1)
        self.shrink()
        self._grow(step)
        self._latest_teacher()

    def _latest_teacher(self) -> None:
        """The 'latest' protocol: a new teacher snapshot at every re-plan and shrink."""
        if self.distilling and self.cfg.distill.teacher == "latest":
            self.teacher.snapshot = WeightSnapshot.take(self.trainable())

    def _score(self, metrics: dict[str, float]) -> float:
        """The headline metric of an evaluation, signed so that higher is better."""
        value = metrics[self.objective.metric]
        return value if self.objective.higher_is_better else -value

    def note_evaluation(self, metrics: dict[str, float]) -> None:
        """Offer a validation result of the current model as the recovery phase's starting point:
        only after pruning, once the masks equal their final targets, before recovery starts."""
        if self.recovery_start is None or self.recovering or not self.pruner.masks.is_hard():
            return
        self.best_after.offer(self._score(metrics), self.trainable())

    def recover(self) -> None:
        """Start the recovery phase: restore the best validation state seen since the masks
        reached their final targets (the current one counts), drop the teacher, reset AdamW."""
        self.pending_eval = self.evaluate(_eval_split(self.objective))
        self.note_evaluation(self.pending_eval)
        if self.best_after.snapshot is not None:
            self.best_after.snapshot.restore()
        self.best_after.clear()
        self.teacher.clear()
        self.start_recovery()

    def snapshots(self) -> list[WeightSnapshot]:
        """The weight copies held now (they follow every cut and growth of the model)."""
        return [b.snapshot for b in (self.teacher, self.best_after) if b.snapshot is not None]

    def shrink(self) -> bool:
        """Remove hard-zero blocks (optimizer state, weight snapshots and distillation maps
        sliced); True if any."""
        cut = self.pruner.shrink(self.optimizer)
        if cut is None:
            return False
        for snapshot in self.snapshots():
            snapshot.follow_cuts(cut.records)
        if self.transforms and not bool(cut.plan.hidden.all()):
            self.shrink_transforms(cut.plan.hidden.nonzero().flatten())
        return True

    def shrink_transforms(self, keep: torch.Tensor) -> None:
        """Keep hidden dims `keep` of the distillation maps (optimizer state sliced too)."""
        records: list[SliceRecord] = []
        for tr in self.transforms:
            slice_linear(tr.map, keep, "out", records)
            slice_linear(tr.map, keep, "in", records)
        slice_optimizer_state(self.optimizer, records)

    def _grow(self, step: int) -> None:
        if self.importance is None:
            return
        t = self.cfg.tuning
        budget = tuning_budget(step, self.start, self.end, self.initial_adapter_params, t.max_tuning_ratio)
        ranks = {name: a.rank for name, a in self.adapters.items()}
        costs = rank_costs(self.adapters)
        new_ranks = plan_growth(ranks, self.importance.value, costs, budget, t.max_rank)
        with torch.random.fork_rng(devices=[]):  # new rows from (seed, step): equal in every process
            torch.manual_seed(self.cfg.train.seed * 1000003 + step)
            apply_growth(self.adapters, new_ranks, self.optimizer)
        for snapshot in self.snapshots():
            snapshot.follow_growth()
        rank_vector = torch.tensor([a.rank for a in self.adapters.values()])
        self.check_replicas("adapter ranks", [rank_vector], step + 1)

    # ---- logging -----------------------------------------------------------------------------
    def status(self, step: int) -> dict[str, object]:
        """Shape, sparsity and schedule figures for a history line."""
        line: dict[str, object] = {"step": step, "epoch": step / self.steps_per_epoch}
        line["lr"] = self.scheduler.get_last_lr()[0]
        line["adapter_params"] = adapter_params(self.adapters)
        line["ranks"] = {name: a.rank for name, a in self.adapters.items()}
        if self.distilling:
            line["teacher_score"] = self.teacher.score
            line["recovery"] = self.recovering
        if self.pruner is None:
            return line
        p, masks = self.pruner, self.pruner.masks
        line["retain_target"] = retain_ratio(step, self.start, self.end, self.cfg.pruning.target_sparsity)
        line["retained"] = p.masked_params() / p.initial_params
        line["physical"] = p.prunable_params() / p.initial_params
        line["heads"] = [int((m > 0).sum()) for m in masks.heads]
        line["neurons"] = [int((m > 0).sum()) for m in masks.neurons]
        line["hidden"] = int((masks.hidden > 0).sum())
        return line

    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics of the current (masked) model on a split (in eval mode; the next step trains)."""
        self.model.eval()
        return self.objective.evaluate(
            self.model,
            self.tokenizer,
            split,
            self.cfg.train.eval_batch_size,
            self.cfg.data.max_length,
            shard=(self.acc.process_index, self.acc.num_processes),
        )

    def finish(self) -> None:
        """Hard masks, physical removal, hooks off, adapters merged."""
        if self.pruner is not None:
            self.pruner.finalize(self.optimizer)
        merge_adapters(self.model)
        self.model.to(getattr(torch, self.cfg.model.dtype))  # float32 heads join the frozen dtype
        self.model.eval()
        self.check_replicas("final weights", list(self.model.state_dict().values()), self.total_steps)


def _eval_split(objective: Objective) -> str:
    return "validation" if "validation" in objective.splits else "train"


def _inference(cfg: AptuneConfig, run: AptRun) -> dict[str, object]:
    """Time the exported model against the original dense model on real test inputs."""
    inputs = run.objective.timing_inputs(run.tokenizer, 32, cfg.data.max_length)
    dense, _ = load_model(cfg.model, run.objective)
    dense.to(run.acc.device)
    dense_ms = inference_ms(dense, inputs)
    pruned_ms = inference_ms(run.model, inputs)
    del dense
    kept = run.family.inventory(run.model).prunable_params()
    before = run.pruner.initial_params if run.pruner else kept
    return {
        "dense_ms": dense_ms,
        "pruned_ms": pruned_ms,
        "speedup": dense_ms / pruned_ms,
        "ideal_speedup": before / kept,
        "batch_size": 32,
        "seq_len": int(inputs["input_ids"].shape[1]),
        "dtype": cfg.model.dtype,
        "device": str(run.acc.device),
    }


def _export(run: AptRun, out: Path, metadata: dict) -> Path:
    """Write the model directory atomically: build it under a temporary name, then rename."""
    final = out / "model"
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".model.tmp-"))
    save_pruned(run.model, tmp, metadata=metadata)
    run.tokenizer.save_pretrained(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def train(
    cfg: AptuneConfig,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> RunResult:
    """Run APT fine-tuning as configured and export the pruned model; returns where and how it went.

    Writes `model/`, `metrics.json`, `history.jsonl`, `config.yaml` and `report.md` (+ plots) to the
    output directory (`cfg.train.output_dir` unless `output_dir` is given), and every
    `train.checkpoint_every` steps a checkpoint under `checkpoints/` that `resume` continues from.
    """
    out = check_output_dir(Path(output_dir or cfg.train.output_dir), overwrite)
    return _execute(cfg, out, None, progress)


def resume(run_dir: str | os.PathLike, progress: bool = True) -> RunResult:
    """Continue the run in `run_dir` from its newest complete checkpoint, with the run's own
    `config.yaml`; the result equals that of an uninterrupted run (bit for bit on CPU)."""
    out = Path(run_dir)
    if not (out / "config.yaml").is_file():
        raise CheckpointError(
            f"{out} is not an aptune run directory (config.yaml is missing); pass the output "
            "directory of the run to resume"
        )
    remove_partial(out)
    path = latest_checkpoint(out)
    if path is None:
        found = len(list((out / CHECKPOINTS).glob("step-*")))
        why = f"all {found} failed their checks, see the warnings above" if found else "there is none"
        raise CheckpointError(
            f"cannot resume {out}: no complete checkpoint in {out / CHECKPOINTS} ({why}); runs write "
            "one every train.checkpoint_every steps, so start this run again with that key set"
        )
    cfg = load_config(out / "config.yaml")
    state = read_state(path)
    if state["config"] != cfg.to_dict():
        raise CheckpointError(
            f"{out / 'config.yaml'} differs from the config that {path.name} was written with; "
            "restore the file, or start a new run with the changed config"
        )
    return _execute(cfg, out, (path, state), progress)


def _accelerator(cfg: AptuneConfig) -> Accelerator:
    """accelerate's state for this process; refuses back-ends that shard parameters."""
    # without CUDA, processes launched by torchrun / accelerate train on the CPU over gloo
    accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision, cpu=not torch.cuda.is_available())
    backend = accelerator.distributed_type
    if backend in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise SetupError(
            f"accelerate is configured for {backend.value}, which shards parameters across processes; "
            "aptune prunes and grows whole weight matrices in place and supports data parallelism "
            "(DDP / multi-CPU) only: run `accelerate config` and pick multi-GPU or multi-CPU"
        )
    return accelerator


def _execute(cfg: AptuneConfig, out: Path, checkpoint: tuple[Path, dict] | None, progress: bool) -> RunResult:
    accelerator = _accelerator(cfg)
    set_seed(cfg.train.seed)
    objective = load_objective(cfg)
    model, tokenizer = load_model(cfg.model, objective)
    run = AptRun(cfg, model, tokenizer, objective, accelerator)
    main = accelerator.is_main_process
    if checkpoint is not None:
        restore(run, *checkpoint)
    elif main:  # every input is valid: only now is anything written
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    train_seconds = _loop(run, out, checkpoint, progress)
    run.finish()
    metrics = _final_metrics(cfg, run, train_seconds)
    model_dir = out / "model"
    if main:
        final = {
            **run.status(run.total_steps),
            "eval": metrics["validation"] or metrics["test"],
            "final": True,
        }
        with open(out / "history.jsonl", "a", encoding="utf-8") as history:
            history.write(json.dumps({**final, "elapsed_s": train_seconds}) + "\n")
        model_dir = _export(run, out, {**objective.metadata(), "max_length": cfg.data.max_length})
        _atomic_json(out / "metrics.json", metrics)
        from .report import write_report

        write_report(out)
    accelerator.wait_for_everyone()
    if accelerator.num_processes > 1:
        accelerator.end_training()  # a gloo group left to the interpreter's exit may abort the process
    return RunResult(output_dir=out, model_dir=model_dir, metrics=metrics)


def _open_history(path: Path, state: dict | None, main: bool):
    """`history.jsonl` for appending: new, or cut back to where the checkpoint `state` left it."""
    if not main:
        return open(os.devnull, "w")
    if state is None:
        return open(path, "w", encoding="utf-8")
    with open(path, "r+b") as f:
        f.truncate(state["history_bytes"])
    return open(path, "a", encoding="utf-8")


def _stopped(exc: NonFiniteLoss, out: Path, last: Path | None, every: int | None) -> TrainingError:
    if last is not None:
        where = f"the last good checkpoint is {last} (aptune train --resume {out} continues from it)"
    elif every:
        where = f"no checkpoint was written before it (the first was due at step {every})"
    else:
        where = "no checkpoint was written (set train.checkpoint_every to keep some)"
    return TrainingError(
        f"training stopped: {exc}; {where}. A loss that diverges again needs a lower "
        "train.learning_rate (or mixed_precision: no)"
    )


def _loop(run: AptRun, out: Path, checkpoint: tuple[Path, dict] | None, progress: bool) -> float:
    """The training steps (from the checkpoint's step when resuming); returns the training time."""
    cfg, main, t = run.cfg, run.acc.is_main_process, run.cfg.train
    last, state = checkpoint if checkpoint is not None else (None, None)
    step = state["step"] if state else 0
    last_eval: dict[str, float] = dict(state["last_eval"]) if state else {}
    started = time.perf_counter() - (state["elapsed_s"] if state else 0.0)
    train_split = run.objective.splits["train"]
    if state is None and cfg.pruning.before_tuning and run.pruner is not None:
        first = batches(train_split, t.batch_size, True, t.seed, epoch=-1)
        run.prune_before_tuning(list(itertools.islice(first, cfg.pruning.calibration_batches)))
    bar = tqdm(
        total=run.total_steps, initial=step, disable=not (progress and main), desc="aptune", unit="step"
    )
    with _open_history(out / "history.jsonl", state, main) as history:
        while step < run.total_steps:
            epoch, done = divmod(step, run.steps_per_epoch)  # every epoch has steps_per_epoch batches
            epoch_batches = batches(train_split, t.batch_size, True, t.seed, epoch)
            for examples in itertools.islice(epoch_batches, done, done + run.total_steps - step):
                try:
                    terms = run.train_step(examples, step)
                except NonFiniteLoss as exc:
                    raise _stopped(exc, out, last, t.checkpoint_every) from None
                event = run.after_step(step)
                step += 1
                line, last_eval = _history_line(run, step, terms, event, last_eval)
                if line is not None:
                    history.write(json.dumps({**line, "elapsed_s": time.perf_counter() - started}) + "\n")
                    history.flush()
                    bar.set_postfix(_postfix(terms, line, last_eval, run.objective.metric))
                if t.checkpoint_every and step % t.checkpoint_every == 0 and step < run.total_steps:
                    history.flush()
                    size = os.fstat(history.fileno()).st_size  # where a resumed run cuts the history
                    saved = Progress(step, size, time.perf_counter() - started, last_eval, cfg.to_dict())
                    last = save_checkpoint(run, out, saved, t.keep_checkpoints) or last
                bar.update(1)
    bar.close()
    return time.perf_counter() - started


def _history_line(
    run: AptRun, step: int, terms: dict, event: str | None, last_eval: dict[str, float]
) -> tuple[dict | None, dict[str, float]]:
    """The history line after `step` steps (None when nothing is due) and the latest evaluation.

    An evaluation the run took between steps (teacher choice at a re-plan) stands in for a due
    one; after the recovery phase restored an older state, a due evaluation is taken anew."""
    t = run.cfg.train
    pending, run.pending_eval = run.pending_eval, None
    due = step % t.eval_every == 0 and step < run.total_steps  # the end has its own final metrics
    if due and (pending is None or event == "recovery"):
        pending = run.evaluate(_eval_split(run.objective))
        run.note_evaluation(pending)
    if pending is None and step % t.log_every != 0 and event is None:
        return None, last_eval
    line = {**run.status(step), **terms}
    if event is not None:
        line["event"] = event
    if pending is None:
        return line, last_eval
    return {**line, "eval": pending}, pending


def _postfix(terms: dict, line: dict, last_eval: dict, metric: str) -> dict[str, str]:
    postfix = {"loss": f"{terms['loss']:.3f}", "sparsity": f"{1 - line.get('retained', 1.0):.2f}"}
    if last_eval:
        postfix[metric[:4]] = f"{last_eval[metric]:.3f}"
    return postfix


def _final_metrics(cfg: AptuneConfig, run: AptRun, train_seconds: float) -> dict[str, object]:
    inv = run.family.inventory(run.model)
    prunable_after = inv.prunable_params()
    prunable_before = run.pruner.initial_params if run.pruner else prunable_after
    metrics: dict[str, object] = {
        "task": run.objective.name,
        "metric": run.objective.metric,
        "model": cfg.model.name_or_path,
        "test": run.evaluate("test") if "test" in run.objective.splits else {},
        "validation": run.evaluate("validation") if "validation" in run.objective.splits else {},
        "params": {
            "total_before": run.total_before,
            "total_after": sum(p.numel() for p in run.model.parameters()),
            "prunable_before": prunable_before,
            "prunable_after": prunable_after,
        },
        "sparsity": 1 - prunable_after / prunable_before,
        "train_seconds": train_seconds,
        "steps": run.total_steps,
        "schedule": {
            "pruning_start": run.start if run.pruner else None,
            "pruning_end": run.end if run.pruner else None,
            "distill_end": run.distill_end if run.distilling else None,
            "recovery_start": run.recovery_start,
        },
        "peak_memory_mb": _peak_memory_mb(run.acc.device),
        "shapes": shapes_dict(run.model, run.family),
        "initial_shapes": run.initial_shapes,
        "notes": list(run.objective.notes),
        "config": cfg.to_dict(),
    }
    if run.acc.num_processes > 1:
        metrics["processes"] = run.acc.num_processes
        metrics["replica_checks"] = run.replica_checks
    if cfg.train.measure_speed and run.acc.is_main_process:
        metrics["inference"] = _inference(cfg, run)
    return metrics
