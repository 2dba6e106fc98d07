"""What a run writes: the typed step record behind `history.jsonl` and the progress bar, the final
metrics, the timing of the export against the dense model, and the exported model folder."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from torch import nn

from ..atomic import staged_dir
from ..card import machine_description
from ..config import AptuneConfig
from ..shrink import save_pruned, shapes_dict
from ..timing import paired_ms
from .setup import load_model

if TYPE_CHECKING:
    from .run import AptRun


@dataclass
class PruningStatus:
    """Where pruning stands: sizes as fractions of the initial prunable parameters, kept blocks."""

    retain_target: float
    retained: float
    physical: float
    heads: list[int]
    neurons: list[int]
    hidden: int


@dataclass
class DistillStatus:
    """Where self-distillation stands: the teacher's validation score (None before one is chosen)
    and whether the recovery phase has begun."""

    teacher_score: float | None
    recovery: bool


@dataclass
class StepRecord:
    """One line of `history.jsonl`, after `step` optimizer steps."""

    step: int
    epoch: float
    lr: float
    adapter_params: int
    ranks: dict[str, int]
    pruning: PruningStatus | None = None
    distill: DistillStatus | None = None
    losses: dict[str, float] = field(default_factory=dict)
    event: str | None = None
    eval: dict[str, float] | None = None
    final: bool = False
    elapsed_s: float = 0.0
    memory: dict[str, float] = field(default_factory=dict)
    """The memory in use at this step (see `memory.current_memory_mb`), the run's peak so far
    (`peak_memory_mb`, see `memory.StepMemory.peak_mb`: the step where it last rose is where the peak
    was set) and, on lines that end a measured step, that step's tensor memory (`step_memory_mb`)."""

    def to_json(self) -> dict[str, object]:
        """The flat JSON line: sections and losses inlined, absent parts left out."""
        line: dict[str, object] = {
            "step": self.step,
            "epoch": self.epoch,
            "lr": self.lr,
            "adapter_params": self.adapter_params,
            "ranks": self.ranks,
        }
        for section in (self.distill, self.pruning):
            if section is not None:
                line.update(asdict(section))
        line.update(self.losses)
        if self.event is not None:
            line["event"] = self.event
        if self.eval is not None:
            line["eval"] = self.eval
        if self.final:
            line["final"] = True
        line["elapsed_s"] = self.elapsed_s
        line.update(self.memory)
        return line

    def postfix(self, last_eval: dict[str, float], metric: str) -> dict[str, str]:
        """The progress bar's figures: mean loss, sparsity and the latest validation score."""
        retained = self.pruning.retained if self.pruning is not None else 1.0
        postfix = {"loss": f"{self.losses['loss']:.3f}", "sparsity": f"{1 - retained:.2f}"}
        if last_eval:
            postfix[f"val_{metric[:4]}"] = f"{last_eval[metric]:.3f}"
        return postfix


def tracker_values(record: StepRecord) -> dict[str, float]:
    """A history line as the flat scalars experiment trackers take: lists and maps become one
    value per entry (`heads/3`, `ranks/<adapter>`, `eval/accuracy`); text and unset values are left out."""
    values: dict[str, float] = {}
    for key, value in record.to_json().items():
        if isinstance(value, dict):
            values.update({f"{key}/{k}": v for k, v in value.items() if _is_number(v)})
        elif isinstance(value, list):
            values.update({f"{key}/{i}": v for i, v in enumerate(value) if _is_number(v)})
        elif _is_number(value):
            values[key] = value
    return values


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def tracker_config(config: dict, prefix: str = "") -> dict[str, object]:
    """A config dict flattened to `section.key` entries of the types trackers store (lists and
    unset values as text)."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(tracker_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


@dataclass
class LossWindow:
    """Sums of the loss terms since the last history line: a line logs their mean over the steps it
    covers, not the last batch's values."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0

    def add(self, losses: dict[str, float]) -> None:
        """Count one step's loss terms."""
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1

    def take(self) -> dict[str, float]:
        """The mean of every term since the last take, and start a new window."""
        mean = {key: total / self.steps for key, total in self.sums.items()}
        self.sums, self.steps = {}, 0
        return mean


def open_history(path: Path, cut_at: int | None, main: bool) -> IO[str]:
    """`history.jsonl` for appending: new, or cut back to `cut_at` bytes (where a checkpoint left it).
    Processes other than the main one write nowhere."""
    if not main:
        return open(os.devnull, "w")
    if cut_at is None:
        return open(path, "w", encoding="utf-8")
    with open(path, "r+b") as f:
        f.truncate(cut_at)
    return open(path, "a", encoding="utf-8")


def write_line(history: IO[str], record: StepRecord) -> None:
    """Append `record` to the history and flush it."""
    history.write(json.dumps(record.to_json()) + "\n")
    history.flush()


def inference(cfg: AptuneConfig, run: AptRun) -> dict[str, object]:
    """Time the exported model against the original dense model on real test inputs, in
    alternating rounds."""
    inputs = run.objective.timing_inputs(run.tokenizer, 32, cfg.data.max_length)
    dense, _ = load_model(cfg.model, run.objective)
    dense.to(run.acc.device)
    dense_ms, pruned_ms = paired_ms(dense, run.model, inputs, budget_s=cfg.train.speed_budget_s)
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
        "machine": machine_description(str(run.acc.device)),
    }


def final_metrics(cfg: AptuneConfig, run: AptRun, train_seconds: float) -> dict[str, object]:
    """`metrics.json`: test and validation scores, sizes, time, memory, shapes and the config."""
    splits = run.objective.splits
    prunable_after = run.family.inventory(run.model).prunable_params()
    prunable_before = run.pruner.initial_params if run.pruner else prunable_after
    metrics: dict[str, object] = {
        "task": run.objective.name,
        "metric": run.objective.metric,
        "model": cfg.model.name_or_path,
        "test": run.evaluate("test") if "test" in splits else {},
        "validation": run.evaluate("validation") if "validation" in splits else {},
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
        "peak_memory_mb": run.step_memory.peak_mb(),
        "shapes": shapes_dict(run.model, run.family),
        "initial_shapes": run.initial_shapes,
        "notes": list(run.objective.notes),
        "config": cfg.to_dict(),
    }
    if run.replicas.world > 1:
        metrics["processes"] = run.replicas.world
        metrics["replica_checks"] = run.replicas.checks
    if run.latency is not None:
        metrics["latency_model"] = latency_summary(cfg, run)
    if cfg.train.measure_speed and run.acc.is_main_process:
        metrics["inference"] = inference(cfg, run)
    return metrics


def latency_summary(cfg: AptuneConfig, run: AptRun) -> dict[str, object]:
    """The speed asked for, the speed the latency model predicts for the export (the measured one
    is `inference.speedup`), and the speed checks that rescaled the latency budget."""
    pruned = run.pruner.predicted_cost()
    return {
        "target_speedup": cfg.pruning.target_speedup,
        "predicted_speedup": run.pruner.initial_cost / pruned,
        "predicted_dense_ms": run.pruner.initial_cost,
        "predicted_pruned_ms": pruned,
        "profile_seconds": run.latency.profile_seconds,
        "cached": run.latency_cached,
        "budget_scale": run.speed.scale,
        "speed_checks": [asdict(c) for c in run.speed.checks],
    }


def export(run: AptRun, out: Path, metadata: dict) -> Path:
    """Write `out/model` (weights, config, aptune.json, tokenizer) atomically."""
    return write_model_dir(run.model, run.tokenizer, out / "model", metadata)


def write_model_dir(model: nn.Module, tokenizer, final: Path, metadata: dict) -> Path:
    """Write `final` (weights, config, aptune.json, and the tokenizer unless None) atomically: the
    files go to a temporary folder that replaces `final` once complete."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(final) as tmp:
        save_pruned(model, tmp, metadata=metadata)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return final
