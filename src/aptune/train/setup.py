"""What a run is built from: the output folder check, the model and tokenizer, the accelerator and
its trackers, the latency model of a speed target, the optimizer, the learning-rate schedule and the
loss scaler."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch import nn

from ..assets import resolve_model_path
from ..config import AptuneConfig, ModelConfig, TrainConfig
from ..errors import AptuneError
from ..families import family_for, supported_model_types
from ..latency import (
    LatencyModel,
    SpeedCalibration,
    SpeedProbe,
    cache_dir,
    latency_model,
    random_inputs,
)
from ..schedule import warmup_linear_factor
from ..search import minimal_shape
from .tasks import Objective

log = logging.getLogger("aptune")


class SetupError(AptuneError):
    """A run cannot start: the message names the problem and the fix."""


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


def _check_labels(model_cfg: ModelConfig, objective: Objective) -> None:
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


def _model_config(model_cfg: ModelConfig, source: str) -> transformers.PretrainedConfig:
    try:
        config = transformers.AutoConfig.from_pretrained(
            source, trust_remote_code=model_cfg.trust_remote_code
        )
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
    return config


def load_model(model_cfg: ModelConfig, objective: Objective) -> tuple[nn.Module, object]:
    """Load the tokenizer and the model `objective` needs, checking the family is supported."""
    source = resolve_model_path(model_cfg.name_or_path)
    remote = model_cfg.trust_remote_code
    _check_labels(model_cfg, objective)
    _model_config(model_cfg, source)
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


@contextmanager
def quiet_transformers(progress: bool = True) -> Iterator[None]:
    """Hide transformers' load reports (a classifier head it initialises is expected here) and, when
    `progress` is off, its progress bars too; both settings are restored afterwards."""
    tf_logging = transformers.utils.logging
    level, bars = tf_logging.get_verbosity(), tf_logging.is_progress_bar_enabled()
    tf_logging.set_verbosity_error()
    if not progress:
        tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        tf_logging.set_verbosity(level)
        if bars:
            tf_logging.enable_progress_bar()


def float32_head(head: nn.Module) -> None:
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


TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX")}
"""The packages a tracker of `train.report_to` can run on (any one of them), where not its own name."""


def check_trackers(names: list[str]) -> None:
    """Refuse a tracker of `train.report_to` whose package is not installed."""
    for name in names:
        packages = TRACKER_PACKAGES.get(name, (name,))
        if not any(importlib.util.find_spec(p) for p in packages):
            raise SetupError(
                f"train.report_to names {name}, which is not installed: pip install {packages[0]} "
                "(or remove it from train.report_to)"
            )


def make_accelerator(cfg: AptuneConfig, project_dir: Path | None = None) -> Accelerator:
    """accelerate's state for this process, with the trackers of `train.report_to` (their logs
    under `project_dir/trackers`); refuses back-ends that shard parameters."""
    check_trackers(cfg.train.report_to)
    trackers = list(cfg.train.report_to) or None
    where = str(project_dir / "trackers") if trackers and project_dir is not None else None
    # without CUDA, processes launched by torchrun / accelerate train on the CPU over gloo
    accelerator = Accelerator(
        mixed_precision=cfg.train.mixed_precision,
        cpu=not torch.cuda.is_available(),
        log_with=trackers,
        project_dir=where,
    )
    backend = accelerator.distributed_type
    if backend in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise SetupError(
            f"accelerate is configured for {backend.value}, which shards parameters across processes; "
            "aptune prunes and grows whole weight matrices in place and supports data parallelism "
            "(DDP / multi-CPU) only: run `accelerate config` and pick multi-GPU or multi-CPU"
        )
    return accelerator


def make_latency_model(
    cfg: AptuneConfig, model: nn.Module, objective: Objective | None, tokenizer, processes: int
) -> tuple[LatencyModel | None, bool, SpeedCalibration | None]:
    """This device's latency model of the unpruned `model` (measured, or read from the cache) when
    `pruning.target_speedup` asks for speed, whether it was cached, and the budget's calibration
    (its probe times `pruning.speed_checks` planned shapes); (None, False, None) otherwise.
    Timed on the batch the final speed measurement uses (random tokens without an objective).
    Refuses several processes and a speed-up beyond the smallest plan the options allow."""
    p = cfg.pruning
    if not (p.enabled and p.target_speedup):
        return None, False, None
    if processes > 1:
        raise SetupError(
            "pruning.target_speedup measures one device's latency and runs in one process; use "
            "pruning.target_sparsity for data-parallel runs"
        )
    log.warning(
        "aptune: latency model of this device at batch 32 x %d for pruning.target_speedup "
        "(measured once, about 15 s for MiniLM on 2 CPU cores, then read from %s)",
        cfg.data.max_length,
        cache_dir(),
    )
    if objective is not None:
        inputs = objective.timing_inputs(tokenizer, 32, cfg.data.max_length)
    else:
        inputs = random_inputs(model, 32, cfg.data.max_length)
    table, cached = latency_model(model, inputs, p.align)
    inv = family_for(model).inventory(model)
    smallest = minimal_shape(
        inv,
        align=p.align,
        min_heads=p.min_heads_per_layer,
        min_neurons=p.min_neurons_per_layer,
        prune_hidden=p.prune_hidden,
    )
    reach = table(inv.heads, inv.neurons, inv.hidden) / table(*smallest)
    if reach < p.target_speedup:
        raise SetupError(
            f"pruning.target_speedup {p.target_speedup:g} is out of reach on this device: the smallest "
            f"plan the pruning options allow is predicted {reach:.2f}x faster than the dense model "
            f"(embeddings, norms and the head do not shrink with the blocks); ask for at most {reach:.2f}"
        )
    probe = SpeedProbe(model, inputs) if p.speed_checks else None
    floor = (1 + 1e-9) / reach  # the smallest plan's share, a hair above it against rounding
    return table, cached, SpeedCalibration(probe, p.target_speedup, floor=floor)


def make_optimizer(
    t: TrainConfig, body: list[nn.Parameter], head: list[nn.Parameter], scale: float = 1.0
) -> torch.optim.AdamW:
    """AdamW with the body (adapters or every weight, and distillation maps) at the learning rate and
    the task head at its own; `scale` multiplies both rates."""
    groups = [{"params": body, "lr": scale * t.learning_rate}]
    if head:
        groups.append({"params": head, "lr": scale * (t.head_learning_rate or t.learning_rate)})
    return torch.optim.AdamW(groups, weight_decay=t.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, t: TrainConfig, steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_ratio` of `steps`, then linear decay to 0 at `steps`.

    Not `transformers.get_scheduler("linear")`: that one runs its first step at a rate of 0, which
    this schedule (step s of the warm-up at (s + 1) / (warmup + 1)) does not waste."""
    warmup = round(t.warmup_ratio * steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_linear_factor(s, warmup, steps))


def make_scaler(t: TrainConfig, device: torch.device) -> torch.amp.GradScaler:
    """The fp16 loss scaler (a pass-through unless `mixed_precision` is fp16)."""
    return torch.amp.GradScaler(device.type, enabled=t.mixed_precision == "fp16")
