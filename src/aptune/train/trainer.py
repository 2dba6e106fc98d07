"""APT inside a user's `transformers.Trainer` script, the way PEFT drops in.

    apt = aptune.prepare(model, aptune.AptConfig())            # adapters, masks, salience hooks
    trainer = aptune.AptTrainer(model=model, args=args, train_dataset=train,
                                eval_dataset=dev, callbacks=[apt])
    trainer.train()                                            # prunes, grows, distils, finishes
    apt.export("out/model", tokenizer)                         # the format `aptune train` writes

The algorithm is the same `AptRun` that `aptune train` drives; here the Trainer owns the loop, the
data, the optimizer and the learning-rate schedule, and the pieces of the run are called from:

* `AptCallback` (a `TrainerCallback`): the schedule between steps. `on_train_begin` fits the
  pruning window to the Trainer's step count and binds its optimizer (so cuts and growth slice and
  pad its state); `on_step_begin` turns salience collection on or off; `on_step_end` decays masks,
  re-plans, shrinks and grows (`AptRun.after_step`); `on_evaluate` offers validation results to the
  recovery phase; `on_train_end` hardens the masks, removes the pruned blocks and merges the adapters.
* `AptTrainer` (a `Trainer` subclass that overrides nothing in `train()`): `compute_loss` mixes in
  self-distillation, `training_step` reads the gradients for salience and adapter importance before
  the Trainer clips them (and measures the tensor memory of a step that ends on a log),
  `create_optimizer` adds the distillation maps, `log` adds APT's state (sparsity, mu, adapter
  parameters, memory) to every training log, so `report_to` trackers get it.

What differs from `aptune train` (the `train` and `data` sections of the config are not used:
`TrainingArguments` and the user's datasets take their place):

* the teacher is chosen by `trainer.evaluate()` on the eval dataset, scored by
  `metric_for_best_model` (eval loss when unset);
* the recovery phase resets the Trainer's AdamW state in place and drives the learning rate itself:
  `distill.recovery_lr_scale` x each group's initial rate, warm-up (`train.warmup_ratio`) and linear
  decay over the recovery steps;
* the Trainer's own optimizer and schedule are used unless `optimizers=apt.optimizers(steps)` passes
  aptune's (AdamW at `train.learning_rate` / `head_learning_rate`, its warm-up/decay);
* one process only: DDP, FSDP and DeepSpeed are refused (pruning changes weight shapes, which
  their gradient buckets and shards cannot follow; `aptune train` runs data-parallel), and so are
  fp16 loss scaling (use bf16 or fp32) and resuming from a Trainer checkpoint (the model's shapes
  changed; `aptune train --resume` resumes bit for bit).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from torch import nn

from ..card import write_model_card
from ..config import AptuneConfig, load_config
from ..errors import AptuneError
from ..schedule import warmup_linear_factor
from .outputs import write_model_dir
from .run import AptRun
from .setup import make_scheduler

__all__ = ["AptCallback", "AptConfig", "AptTrainer", "prepare"]

AptConfig = AptuneConfig
"""The config `prepare` takes: the same as `aptune train`'s (its `train` and `data` sections unused)."""

log = logging.getLogger("aptune")


@dataclass
class _OneProcess:
    """What `AptRun` reads of an accelerator, for a run whose loop a Trainer drives in one process
    (the Trainer's accelerator runs the forward passes, autocast included)."""

    device: torch.device
    num_processes: int = 1
    process_index: int = 0
    is_main_process: bool = True

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


class TrainerRun(AptRun):
    """An `AptRun` whose evaluations, scores and recovery go through a `transformers.Trainer`."""

    trainer: transformers.Trainer | None = None

    def validate(self) -> dict[str, float]:
        """`trainer.evaluate()` on its eval dataset (teacher selection, recovery)."""
        return self.trainer.evaluate()

    def score(self, metrics: dict[str, float]) -> float:
        """`metric_for_best_model` (eval loss when unset), signed so that higher is better."""
        args = self.trainer.args
        name = args.metric_for_best_model or "loss"
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            raise AptuneError(
                f"the evaluation has no {key!r} (it has {', '.join(sorted(metrics))}); set "
                "metric_for_best_model to one of those, or pass compute_metrics that returns it"
            )
        higher = bool(args.greater_is_better) if args.metric_for_best_model else False
        return metrics[key] if higher else -metrics[key]

    def start_recovery(self) -> None:
        """A fresh AdamW in place: the Trainer keeps its optimizer object, whose moments and step
        counts start anew; the callback sets the recovery learning rates."""
        self.optimizer.state.clear()
        self.recovering = True


def _config(config: AptuneConfig | str | os.PathLike | None) -> AptuneConfig:
    if config is None:
        return AptuneConfig()
    if isinstance(config, AptuneConfig):
        return config
    return load_config(config)


def prepare(
    model: nn.Module,
    config: AptuneConfig | str | os.PathLike | None = None,
    tokenizer=None,
    device: str | torch.device | None = None,
) -> AptCallback:
    """Make a loaded Hugging Face model an APT model, in place, and return the callback that runs
    APT's schedule inside `AptTrainer` (pass it in `callbacks=`).

    Adapters are attached to the config's `model.adapter` components (only they and the task head
    train), mask hooks and salience collection are installed, and the model moves to `device`
    (default: CUDA when available, else the CPU, as `Trainer` chooses). `config` is an
    `AptConfig` (= `AptuneConfig`), a YAML/JSON config path, or None for the defaults; its `model`
    (adapter and fine-tuning mode), `pruning`, `tuning` and `distill` sections apply.
    """
    cfg = _config(config)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    run = TrainerRun(cfg, model, tokenizer, None, _OneProcess(target), steps=(1, 1))  # set at on_train_begin
    return AptCallback(run)


class AptCallback(transformers.TrainerCallback):
    """Runs APT's schedule from inside `AptTrainer` (see the module docstring); made by `prepare`."""

    def __init__(self, run: TrainerRun):
        self.run = run
        self.trainer: transformers.Trainer | None = None
        self.initial_lrs: list[float] = []
        self.recovery_lrs: list[float] = []
        """The rates of the latest recovery step (the Trainer's scheduler resets them after it)."""
        self.terms: dict[str, float] = {}
        """The latest distillation loss terms, for the next training log."""
        self.finished = False

    @property
    def model(self) -> nn.Module:
        """The model being pruned and tuned (pruned, merged and dense once training ended)."""
        return self.run.model

    def bind(self, trainer: transformers.Trainer) -> None:
        """Attach the Trainer whose evaluations and optimizer the run uses (AptTrainer does this)."""
        self.trainer = self.run.trainer = trainer

    def optimizers(
        self, num_training_steps: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        """aptune's own AdamW and warm-up/decay schedule over `num_training_steps` (the config's
        `train.learning_rate`, `head_learning_rate`, `weight_decay` and `warmup_ratio`), for
        `Trainer(optimizers=...)`: what `aptune train` optimizes with."""
        optimizer = self.run._make_optimizer()
        return optimizer, make_scheduler(optimizer, self.run.cfg.train, num_training_steps)

    # ---- Trainer events --------------------------------------------------------------------
    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        self._check(args, state)
        run = self.run
        per_epoch = (
            math.ceil(state.max_steps / state.num_train_epochs) if state.num_train_epochs else state.max_steps
        )
        run.set_window(state.max_steps, max(1, per_epoch))
        run.optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
        run.scheduler = lr_scheduler
        self._check_optimizer()
        self.initial_lrs = [g.get("initial_lr", g["lr"]) for g in run.optimizer.param_groups]
        for note in run.schedule_problems():
            log.warning("aptune: %s", note)

    def on_step_begin(self, args, state, control, **kwargs):
        step = state.global_step
        self.run.observe(step)
        if self.run.recovering:
            self._recovery_lr(step)

    def on_step_end(self, args, state, control, **kwargs):
        self.run.after_step(state.global_step - 1)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and self.run.pruner is not None and not self.finished:
            self.run.note_evaluation(metrics)

    def on_train_end(self, args, state, control, **kwargs):
        self.run.finish()
        self.finished = True

    # ---- what the Trainer shows and what the run leaves ------------------------------------
    def log_values(self, step: int) -> dict[str, float]:
        """APT's state after `step` steps as flat scalars for a training log line."""
        record = self.run.status(step)
        values: dict[str, float] = {"apt/adapter_params": float(record.adapter_params)}
        if record.pruning is not None:
            p = record.pruning
            values.update({"apt/retained": p.retained, "apt/retain_target": p.retain_target})
            values.update({"apt/physical": p.physical, "apt/hidden": float(p.hidden)})
        values.update({f"apt/{k}": v for k, v in record.memory.items()})
        values.update({f"apt/{k}": v for k, v in self.terms.items()})
        return values

    def export(
        self,
        model_dir: str | os.PathLike,
        tokenizer=None,
        max_length: int = 128,
        metadata: dict | None = None,
        metrics: dict | None = None,
    ) -> Path:
        """Write the pruned model to `model_dir` in the format `aptune train` writes to `model/`
        (weights, config, `aptune.json`, tokenizer, model card), atomically; call after
        `trainer.train()`.

        `metadata` describes the task for `aptune eval` / `predict`; by default a sequence
        classifier records its `id2label` names and `max_length`. `metrics` (e.g. what
        `trainer.evaluate()` returned) go into the model card."""
        if not self.finished:
            raise AptuneError(
                "export the model after trainer.train() has finished (the masks harden at its end)"
            )
        tokenizer = tokenizer or self.run.tokenizer or (self.trainer and self.trainer.processing_class)
        info = metadata if metadata is not None else _classifier_metadata(self.model)
        final = write_model_dir(self.model, tokenizer, Path(model_dir), {**info, "max_length": max_length})
        card = {"model": getattr(self.model.config, "_name_or_path", None), **(metrics or {})}
        ranks = {name: a.rank for name, a in self.run.adapters.items()}
        write_model_card(final, card, self.run.cfg.to_dict(), ranks=ranks)  # as `aptune train` does
        return final

    # ---- checks and the recovery schedule --------------------------------------------------
    def _check(self, args, state) -> None:
        if self.trainer is None:
            raise AptuneError(
                "AptCallback runs inside aptune.AptTrainer, which reads gradients before clipping and "
                "mixes in self-distillation: use aptune.AptTrainer(..., callbacks=[apt]) instead of Trainer"
            )
        if args.world_size > 1 or self.trainer.is_deepspeed_enabled or self.trainer.is_fsdp_enabled:
            raise AptuneError(
                "AptTrainer runs in one process: pruning changes weight shapes, which DDP buckets and "
                "FSDP/DeepSpeed shards cannot follow; use `aptune train` for data-parallel runs"
            )
        if args.fp16:
            raise AptuneError("AptTrainer does not support fp16 loss scaling; use bf16=True or fp32")
        if state.global_step > 0:
            raise AptuneError(
                "an APT run cannot resume from a Trainer checkpoint (pruning changed the model's shapes); "
                "start training anew, or use `aptune train --resume`"
            )
        if args.gradient_accumulation_steps > 1 and self.run.distilling:
            raise AptuneError("self-distillation under AptTrainer needs gradient_accumulation_steps=1")
        if torch.device(args.device).type != self.run.acc.device.type:
            raise AptuneError(
                f"the model was prepared on {self.run.acc.device} but the Trainer trains on {args.device}; "
                f"pass device={str(args.device)!r} to aptune.prepare"
            )
        needs_eval = self.run.distill.chooses_by_validation or self.run.recovery_start is not None
        if needs_eval and self.trainer.eval_dataset is None:
            raise AptuneError(
                "self-distillation chooses its teacher (and the recovery phase its start) by evaluation: "
                "pass eval_dataset to AptTrainer, or set distill.enabled false"
            )

    def _check_optimizer(self) -> None:
        stepped = {id(p) for g in self.run.optimizer.param_groups for p in g["params"]}
        missing = [p for p in self.run.distill.transforms.parameters() if id(p) not in stepped]
        if missing:
            raise AptuneError(
                "the optimizer does not train the distillation maps: let AptTrainer create it, or pass "
                "optimizers=apt.optimizers(num_training_steps)"
            )

    def _recovery_lr(self, step: int) -> None:
        """Learning rates of recovery step `step`: `recovery_lr_scale` x the initial rate, with
        aptune's warm-up and linear decay over the recovery steps."""
        run = self.run
        first, steps = run.recovery_start, run.total_steps - run.recovery_start
        factor = warmup_linear_factor(step - first, round(run.cfg.train.warmup_ratio * steps), steps)
        scale = run.cfg.distill.recovery_lr_scale
        self.recovery_lrs = [scale * initial * factor for initial in self.initial_lrs]
        for group, lr in zip(run.optimizer.param_groups, self.recovery_lrs, strict=True):
            group["lr"] = lr


def _classifier_metadata(model: nn.Module) -> dict:
    """What `aptune.json` records for a sequence classifier trained under Trainer."""
    if not type(model).__name__.endswith("ForSequenceClassification"):
        raise AptuneError(
            f"pass metadata= to export a {type(model).__name__}: aptune records the task of sequence "
            "classifiers by itself (e.g. {'objective': 'CausalLM', ...} as `aptune train` writes it)"
        )
    config = model.config
    names = [str(config.id2label[i]) for i in range(config.num_labels)]
    return {"task": "trainer", "objective": "Classification", "label_names": names, "is_pair": False}


class AptTrainer(transformers.Trainer):
    """`transformers.Trainer` for an APT model: pass the callback `aptune.prepare` returned in
    `callbacks=`. Overrides `compute_loss` (self-distillation), `training_step` (salience and
    adapter importance from the unclipped gradients), `create_optimizer` (the distillation maps
    train too) and `log` (APT's state in every training log); nothing in `train()`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        found = [c for c in self.callback_handler.callbacks if isinstance(c, AptCallback)]
        if len(found) != 1:
            raise AptuneError(
                "AptTrainer needs the one callback aptune.prepare returned in callbacks= "
                f"(found {len(found)})"
            )
        self.apt = found[0]
        self.apt.bind(self)

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with the distillation maps as one more group."""
        optimizer = super().create_optimizer(model)
        maps = list(self.apt.run.distill.transforms.parameters())
        if maps:
            optimizer.add_param_group({"params": maps, "weight_decay": self.args.weight_decay})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The Trainer's loss, mixed with self-distillation from the teacher while mu > 0."""
        run, step = self.apt.run, self.state.global_step
        if not (model.training and run.distilling_at(step)):
            if model.training:
                self.apt.terms = {}
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            run.step_memory.forward_ended()
            return result
        teacher = run.teacher_outputs({k: v for k, v in inputs.items() if k != "labels"})
        out = model(**inputs, output_hidden_states=True)
        loss, self.apt.terms = run.distill_mix(out, teacher, inputs, out.loss, step)
        run.step_memory.forward_ended()
        return (loss, out) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Forward and backward (the Trainer's), then salience and adapter importance from the
        batch's gradients, on the last micro-batch of a step, before they are clipped. The last
        micro-batch of a step that ends on a training log measures its tensor memory for that log
        (`apt/step_memory_mb`)."""
        run, step, every = self.apt.run, self.state.global_step, self.state.logging_steps
        by_steps = self.args.logging_strategy == "steps" and every > 0
        logged = self.accelerator.sync_gradients and by_steps and (step + 1) % every == 0
        with run.measuring(step) if logged else contextlib.nullcontext():
            loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients:
            run.take_gradients(step)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Training logs carry APT's state (`apt/...`: sparsity, mu, adapter parameters, memory, the
        logged step's tensor memory) and, in the recovery phase, the learning rate it sets."""
        if "loss" in logs and not self.apt.finished:
            logs = {**logs, **self.apt.log_values(self.state.global_step)}
            if self.apt.run.recovering:  # the Trainer reads its scheduler, which recovery overrides
                logs["learning_rate"] = self.apt.recovery_lrs[0]
        super().log(logs, start_time)
