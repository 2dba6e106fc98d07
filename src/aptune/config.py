"""Typed, validated configuration for a whole aptune run.

A run is described by :class:`AptuneConfig`, a tree of dataclass sections (``model``, ``pruning``,
``tuning``, ``distill``, ``train``, ``data``).  Every leaf option carries a help text and, where it
applies, an allowed range in its field metadata, so :func:`describe_options` can document all options.

Configs are read from YAML or JSON with :func:`load_config`, written with :func:`save_config` and
adjusted from the command line with :func:`apply_overrides` (``"model.adapter.rank=16"``).  Every
problem is reported as a :class:`ConfigError` naming the dotted key, what is wrong and what is allowed.

YAML is read with a subclass of ``yaml.SafeLoader`` that differs from ``yaml.safe_load`` in two
YAML-1.2 style ways: exponent floats without a dot or sign (``5e-4``) are floats rather than strings,
and only ``true``/``false`` are booleans, so ``mixed_precision: no`` stays the string ``"no"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import json
import math
import os
import re
import reprlib
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import AptuneError

__all__ = [
    "AdapterConfig",
    "AptuneConfig",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "ModelConfig",
    "PruningConfig",
    "TrainConfig",
    "TuningConfig",
    "apply_overrides",
    "describe_options",
    "load_config",
    "save_config",
]

MhaComponent = Literal["query", "key", "value", "output"]
FfnComponent = Literal["intermediate", "output"]


class ConfigError(AptuneError):
    """An invalid configuration value, key or file.

    The message names the dotted key (for example ``pruning.target_sparsity``), what is wrong and
    what is allowed; ``key`` holds the dotted key, or ``""`` for problems with a file as a whole.
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


# ----------------------------------------------------------------------------------------------------
# Field metadata: help text and allowed range
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    """A value constraint: ``ok(value)`` tells whether it holds, ``text`` describes it for humans."""

    ok: Callable[[Any], bool]
    text: str


def _ge(lo: int) -> _Check:
    return _Check(lambda v: v >= lo, f">= {lo}")


def _gt(lo: int) -> _Check:
    return _Check(lambda v: v > lo, f"> {lo}")


_UNIT_CLOSED_OPEN = _Check(lambda v: 0 <= v < 1, "in [0, 1)")
_UNIT_OPEN_CLOSED = _Check(lambda v: 0 < v <= 1, "in (0, 1]")
_UNIT_CLOSED = _Check(lambda v: 0 <= v <= 1, "in [0, 1]")
_NON_EMPTY = _Check(lambda v: v.strip() != "", "a non-empty string")
_STEP = _Check(
    lambda v: 0 <= v <= 1 if isinstance(v, float) else v >= 0,
    "an int step >= 0 or a float fraction of total steps in [0, 1]",
)


def _meta(text: str, check: _Check | None = None) -> dict[str, Any]:
    return {"help": text, "check": check}


# ----------------------------------------------------------------------------------------------------
# Type checking of field values
# ----------------------------------------------------------------------------------------------------

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


def _describe(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {_short.repr(value)}"


def _type_str(tp: Any) -> str:
    """Render a field annotation for humans, e.g. ``int | None`` or ``Literal['no', 'fp16']``."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin in (Union, UnionType):
        return " | ".join(_type_str(a) for a in args)
    if origin is list:
        return f"list[{_type_str(args[0])}]"
    return "None" if tp is NoneType else tp.__name__


def _type_error(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(f"{key}: expected {_type_str(tp)}, got {_describe(value)}", key)


def _number(key: str, tp: Any, value: Any, keep_int: bool) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(key, tp, value)
    if keep_int and isinstance(value, int):
        return value
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{key}: must be a finite number, got {_short.repr(value)}", key)
    return number


def _coerce(key: str, tp: Any, value: Any, shown: Any = None) -> Any:
    """Check ``value`` against annotation ``tp``; return it normalised (int -> float, lists copied).

    ``shown`` is the annotation named in type errors (the whole ``X | None`` when checking ``X``).
    """
    shown = tp if shown is None else shown
    origin, args = get_origin(tp), get_args(tp)
    if value is None:
        if NoneType in args:
            return None
        raise ConfigError(f"{key}: must not be null; expected {_type_str(tp)}", key)
    if origin in (Union, UnionType):
        members = [a for a in args if a is not NoneType]
        if members == [int, float]:
            return _number(key, tp, value, keep_int=True)
        return _coerce(key, members[0], value, tp)
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        choices = ", ".join(map(repr, args))
        raise ConfigError(f"{key}: must be one of {choices}, got {_short.repr(value)}", key)
    if origin is list:
        return _coerce_list(key, tp, value)
    if _is_section(tp):
        if not isinstance(value, tp):
            raise _type_error(key, shown, value)
        value.validate()
        return value
    if tp is float:
        return _number(key, shown, value, keep_int=False)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise _type_error(key, shown, value)
    return value


def _coerce_list(key: str, tp: Any, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _type_error(key, tp, value)
    items = [_coerce(key, get_args(tp)[0], item) for item in value]
    if len(set(items)) != len(items):
        raise ConfigError(f"{key}: must not contain duplicates, got {_short.repr(value)}", key)
    return items


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, _Section)


# ----------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------

_S = TypeVar("_S", bound="_Section")


class _Section:
    """Base of all config sections: validation on construction, dict conversion."""

    _path: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every option (types, ranges, cross-field rules), normalising ints given for floats.

        Raises:
            ConfigError: naming the first offending dotted key.
        """
        hints = _hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            key = _join(self._path, f.name)
            value = _coerce(key, hints[f.name], getattr(self, f.name))
            check: _Check | None = f.metadata.get("check")
            if check is not None and value is not None and not check.ok(value):
                nullable = " or null" if NoneType in get_args(hints[f.name]) else ""
                raise ConfigError(f"{key}: must be {check.text}{nullable}, got {value!r}", key)
            setattr(self, f.name, value)
        self._cross_check()

    def _cross_check(self) -> None:
        """Rules involving several options; sections with such rules override this."""

    @classmethod
    def from_dict(cls: type[_S], data: Mapping[str, Any]) -> _S:
        """Build and validate a section from a (possibly partial) nested mapping.

        Missing options take their defaults.  Unknown keys, wrong types and out-of-range values raise
        :class:`ConfigError`; unknown keys come with the closest valid key(s) as a suggestion.
        """
        return _build(cls, data, cls._path)

    def to_dict(self) -> dict[str, Any]:
        """Return the section as plain nested dicts/lists/scalars (JSON and YAML serialisable)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _build(cls: type[_S], data: Any, path: str) -> _S:
    if not isinstance(data, Mapping):
        what = f"{path}: expected a mapping of options" if path else "top-level config must be a mapping"
        raise ConfigError(f"{what}, got {_describe(data)}", path)
    hints = _hints(cls)
    valid = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{path or 'config'}: keys must be strings, got {_short.repr(key)}", path)
        if key not in valid:
            raise _unknown_key(path, key, valid)
        tp = hints[key]
        kwargs[key] = _build(tp, value, _join(path, key)) if _is_section(tp) else value
    return cls(**kwargs)


def _unknown_key(path: str, key: str, valid: list[str]) -> ConfigError:
    dotted = _join(path, key)
    elsewhere = [name for name, *_ in describe_options() if name.rsplit(".", 1)[-1] == key]
    close = elsewhere + [_join(path, name) for name in difflib.get_close_matches(key, valid, n=3)]
    if close:
        hint = "did you mean " + " or ".join(map(repr, close)) + "?"
    else:
        where = f"in '{path}'" if path else "at top level"
        hint = f"valid keys {where} are: {', '.join(valid)}"
    return ConfigError(f"unknown key {dotted!r}; {hint}", dotted)


@dataclass(kw_only=True)
class AdapterConfig(_Section):
    """Where APT adapters go and how they start (``model.adapter``)."""

    _path: ClassVar[str] = "model.adapter"

    mha_components: list[MhaComponent] = field(
        default_factory=lambda: ["query", "value"],
        metadata=_meta("Attention projections that receive adapters."),
    )
    ffn_components: list[FfnComponent] = field(
        default_factory=lambda: ["intermediate"],
        metadata=_meta("Feed-forward projections that receive adapters."),
    )
    rank: int = field(default=8, metadata=_meta("Initial adapter rank.", _ge(1)))
    alpha: float = field(
        default=16.0, metadata=_meta("Adapter scaling numerator (output scaled by alpha / rank).", _gt(0))
    )
    dropout: float = field(
        default=0.0, metadata=_meta("Dropout probability on the adapter input.", _UNIT_CLOSED_OPEN)
    )
    init: Literal["kaiming", "gaussian"] = field(
        default="kaiming", metadata=_meta("Initialisation of the adapter down-projection.")
    )


@dataclass(kw_only=True)
class ModelConfig(_Section):
    """Which pretrained model to load and how (``model``)."""

    _path: ClassVar[str] = "model"

    name_or_path: str = field(
        default="builtin:minilm",
        metadata=_meta(
            "Hub model name, local model directory, or 'builtin:minilm' (BERT) / 'builtin:smollm2' (LLaMA).",
            _NON_EMPTY,
        ),
    )
    num_labels: int | None = field(
        default=None, metadata=_meta("Number of classification labels; null infers it from the data.", _ge(2))
    )
    trust_remote_code: bool = field(
        default=False, metadata=_meta("Allow running custom model code shipped with a hub model.")
    )
    head: Literal["classifier", "causal-lm", "seq2seq"] = field(
        default="classifier",
        metadata=_meta(
            "Model head: 'classifier' (sequence classification), 'causal-lm' (decoder LMs: "
            "classification as generation, instruction tuning, language modelling) or 'seq2seq' "
            "(encoder-decoders such as T5: text-to-label classification, source-to-target generation)."
        ),
    )
    dtype: Literal["float32", "bfloat16", "float16"] = field(
        default="float32",
        metadata=_meta("Dtype of the frozen pretrained weights; adapters and the task head stay float32."),
    )
    finetune: Literal["adapters", "full"] = field(
        default="adapters",
        metadata=_meta(
            "What trains: 'adapters' (APT/LoRA adapters plus the task head) or 'full' (every weight; "
            "the full fine-tuning baseline)."
        ),
    )
    adapter: AdapterConfig = field(default_factory=AdapterConfig, metadata=_meta("Adapter settings."))


@dataclass(kw_only=True)
class PruningConfig(_Section):
    """Structured pruning during fine-tuning (``pruning``)."""

    _path: ClassVar[str] = "pruning"

    enabled: bool = field(default=True, metadata=_meta("Prune the model while fine-tuning."))
    target_sparsity: float = field(
        default=0.6,
        metadata=_meta("Fraction of prunable parameters removed by the end of pruning.", _UNIT_CLOSED_OPEN),
    )
    scheduler: Literal["cubic"] = field(
        default="cubic", metadata=_meta("Sparsity schedule between start_step and end_step.")
    )
    salience_type: Literal["outlier-aware", "activation-gradient"] = field(
        default="outlier-aware",
        metadata=_meta("Salience score; 'activation-gradient' never uses the kurtosis term."),
    )
    use_kurtosis: bool = field(
        default=True, metadata=_meta("Add the activation-kurtosis term to outlier-aware salience.")
    )
    kurtosis_weight: float = field(
        default=1.0, metadata=_meta("Weight of the kurtosis term in outlier-aware salience.", _ge(0))
    )
    update_frequency: int = field(
        default=100, metadata=_meta("Training steps between pruning-mask updates.", _ge(1))
    )
    mask_decay_rate: float = field(
        default=0.01,
        metadata=_meta("Per-step decrease of a pruned structure's mask towards zero.", _UNIT_OPEN_CLOSED),
    )
    momentum_salience: float = field(
        default=0.85,
        metadata=_meta(
            "Per-step moving-average coefficient of the per-batch salience scores (reference 0.85). "
            "Salience is collected from update_frequency steps before start_step to end_step.",
            _UNIT_CLOSED_OPEN,
        ),
    )
    start_step: int | float = field(
        default=0.1,
        metadata=_meta("When pruning starts: int = absolute step, float = fraction of total steps.", _STEP),
    )
    end_step: int | float = field(
        default=0.5,
        metadata=_meta("When target_sparsity is reached; same convention as start_step.", _STEP),
    )
    align: int = field(
        default=8, metadata=_meta("Kept hidden/intermediate sizes are rounded to a multiple of this.", _ge(1))
    )
    min_heads_per_layer: int = field(
        default=1, metadata=_meta("Attention heads every layer keeps at least.", _ge(1))
    )
    min_neurons_per_layer: int = field(
        default=1, metadata=_meta("Feed-forward neurons every layer keeps at least.", _ge(1))
    )
    prune_hidden: bool = field(default=True, metadata=_meta("Also prune hidden (model) dimensions."))
    uniform_layers: bool = field(
        default=False,
        metadata=_meta(
            "Keep the same number of heads and neurons in every layer; LLaMA-family results are then "
            "stock checkpoints that transformers loads without aptune."
        ),
    )
    before_tuning: bool = field(
        default=False,
        metadata=_meta(
            "Prune before tuning (the paper's mode for 7B+ models): one-shot salience on "
            "calibration_batches training batches, hard pruning to target_sparsity, then tuning."
        ),
    )
    calibration_batches: int = field(
        default=8, metadata=_meta("Training batches scored for before_tuning pruning.", _ge(1))
    )

    @property
    def kurtosis_enabled(self) -> bool:
        """Whether salience includes the kurtosis term (outlier-aware salience with a positive weight)."""
        return self.use_kurtosis and self.salience_type == "outlier-aware" and self.kurtosis_weight > 0

    def _cross_check(self) -> None:
        start, end = self.start_step, self.end_step
        if isinstance(start, float) == isinstance(end, float) and end <= start:
            raise ConfigError(
                f"pruning.end_step: must be > pruning.start_step ({start!r}), got {end!r}", "pruning.end_step"
            )


@dataclass(kw_only=True)
class TuningConfig(_Section):
    """Adaptive adapter-rank growth (``tuning``)."""

    _path: ClassVar[str] = "tuning"

    enabled: bool = field(default=True, metadata=_meta("Grow adapter ranks adaptively during training."))
    max_rank: int = field(
        default=64, metadata=_meta("Largest rank any adapter may grow to (>= model.adapter.rank).", _ge(1))
    )
    max_tuning_ratio: float = field(
        default=4.0,
        metadata=_meta("Largest allowed growth of the tuned-parameter count over its initial value.", _ge(1)),
    )
    momentum_importance: float = field(
        default=0.85,
        metadata=_meta("Per-step moving-average coefficient of adapter importance.", _UNIT_CLOSED_OPEN),
    )


@dataclass(kw_only=True)
class DistillConfig(_Section):
    """Self-distillation while pruning (``distill``)."""

    _path: ClassVar[str] = "distill"

    enabled: bool = field(default=True, metadata=_meta("Use self-distillation while pruning."))
    teacher: Literal["best", "latest"] = field(
        default="best",
        metadata=_meta(
            "Which snapshot teaches. 'best' (the reference's): the adapters of the best validation score, "
            "checked at every re-plan of the pruning window (one evaluation each), frozen after it, and "
            "sliced when the model shrinks. 'latest': a new snapshot at every re-plan and shrink."
        ),
    )
    teacher_masks: bool = field(
        default=True,
        metadata=_meta("Run the teacher with the current pruning masks (reference) instead of without any."),
    )
    pred_weight: float = field(
        default=0.1, metadata=_meta("Weight of the prediction (logit) distillation loss.", _ge(0))
    )
    layer_weight: float = field(
        default=0.9, metadata=_meta("Weight of the intermediate-layer distillation loss.", _ge(0))
    )
    temperature: float = field(
        default=2 / 3,
        metadata=_meta("Softmax temperature of the prediction distillation loss (reference 2/3).", _gt(0)),
    )
    pred_scale: float = field(
        default=10.0,
        metadata=_meta("Factor on the prediction loss (KL x T^2) before pred_weight (reference 10).", _ge(0)),
    )
    resample_layers: bool = field(
        default=False,
        metadata=_meta(
            "Draw the distilled layer of each quarter of the layers anew every step instead of always "
            "taking the quarter's last layer."
        ),
    )
    after_pruning: float = field(
        default=0.5,
        metadata=_meta(
            "Fraction of the steps after pruning ends that keep distilling (mu = 1); the rest is the "
            "recovery phase (or plain task-loss training when recovery is off).",
            _UNIT_CLOSED,
        ),
    )
    recovery: bool = field(
        default=True,
        metadata=_meta(
            "When distillation ends, restore the best validation state seen after pruning, reset AdamW "
            "and train on the task loss with a fresh warm-up/decay at recovery_lr_scale x the peak rate."
        ),
    )
    recovery_lr_scale: float = field(
        default=0.1,
        metadata=_meta("Peak learning rate of the recovery phase, as a fraction of train's.", _gt(0)),
    )


@dataclass(kw_only=True)
class TrainConfig(_Section):
    """Optimisation, evaluation and checkpointing (``train``)."""

    _path: ClassVar[str] = "train"

    epochs: float = field(
        default=3.0, metadata=_meta("Training epochs; ignored when max_steps is set.", _gt(0))
    )
    max_steps: int | None = field(
        default=None, metadata=_meta("Total optimisation steps; overrides epochs when set.", _ge(1))
    )
    batch_size: int = field(default=32, metadata=_meta("Training batch size.", _ge(1)))
    eval_batch_size: int = field(default=64, metadata=_meta("Evaluation batch size.", _ge(1)))
    learning_rate: float = field(
        default=5e-4, metadata=_meta("Learning rate of the tuned (adapter) parameters.", _gt(0))
    )
    head_learning_rate: float | None = field(
        default=None, metadata=_meta("Learning rate of the task head; null uses learning_rate.", _gt(0))
    )
    weight_decay: float = field(default=0.0, metadata=_meta("AdamW weight decay.", _ge(0)))
    warmup_ratio: float = field(
        default=0.06,
        metadata=_meta("Fraction of total steps spent in learning-rate warm-up.", _UNIT_CLOSED_OPEN),
    )
    seed: int = field(default=42, metadata=_meta("Random seed."))
    eval_every: int = field(default=100, metadata=_meta("Steps between evaluations.", _ge(1)))
    log_every: int = field(default=10, metadata=_meta("Steps between log lines.", _ge(1)))
    mixed_precision: Literal["no", "fp16", "bf16"] = field(
        default="no", metadata=_meta("Autocast precision used for training.")
    )
    measure_speed: bool = field(
        default=True,
        metadata=_meta(
            "At the end, time the exported model against the dense original on 32 test inputs "
            "(reloads the original model)."
        ),
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=_meta("Recompute activations in the backward pass to save memory.")
    )
    checkpoint_every: int | None = field(
        default=None,
        metadata=_meta(
            "Steps between checkpoints (OUTPUT/checkpoints/step-N, what `aptune train --resume OUTPUT` "
            "continues from); null writes none.",
            _ge(1),
        ),
    )
    keep_checkpoints: int = field(
        default=2, metadata=_meta("Number of most recent checkpoints kept on disk.", _ge(1))
    )
    output_dir: str = field(
        default="runs/aptune", metadata=_meta("Directory for checkpoints, logs and results.", _NON_EMPTY)
    )


@dataclass(kw_only=True)
class DataConfig(_Section):
    """Task and data loading (``data``)."""

    _path: ClassVar[str] = "data"

    task: str = field(
        default="rotten_tomatoes",
        metadata=_meta("Built-in task name, HF dataset name such as 'glue/sst2', or '' to use local files."),
    )
    train_file: str | None = field(
        default=None, metadata=_meta("Local training data file (required when task is '').", _NON_EMPTY)
    )
    validation_file: str | None = field(
        default=None, metadata=_meta("Local validation data file.", _NON_EMPTY)
    )
    test_file: str | None = field(default=None, metadata=_meta("Local test data file.", _NON_EMPTY))
    text_column: str = field(default="text", metadata=_meta("Column holding the input text.", _NON_EMPTY))
    text_pair_column: str | None = field(
        default=None,
        metadata=_meta("Column holding the second text of a pair; null for single-text tasks.", _NON_EMPTY),
    )
    label_column: str = field(default="label", metadata=_meta("Column holding the label.", _NON_EMPTY))
    task_type: Literal["classification", "instruction", "language-modeling", "seq2seq"] = field(
        default="classification",
        metadata=_meta(
            "What the data is: labelled texts, Alpaca-style instruction JSON (instruction, input, output; "
            "loss on the output only), plain text (perplexity), or source/target text pairs (ROUGE). "
            "'instruction' and 'language-modeling' need model.head causal-lm, 'seq2seq' model.head seq2seq."
        ),
    )
    target_column: str = field(
        default="target",
        metadata=_meta(
            "Seq2seq: column holding the target text (the source is data.text_column); "
            "'highlights' for CNN/DailyMail.",
            _NON_EMPTY,
        ),
    )
    source_prefix: str = field(
        default="",
        metadata=_meta("Seq2seq: text put before every source, e.g. 'summarize: ' for T5."),
    )
    max_target_length: int = field(
        default=64,
        metadata=_meta("Seq2seq: maximum target length in tokens, also the generation limit.", _ge(2)),
    )
    prompt_template: str = field(
        default="Review: {text}\nSentiment:",
        metadata=_meta(
            "Classification with a causal LM or a seq2seq model: the prompt, with {text} (and "
            "{text_pair}) placeholders. A causal LM learns to continue it with the label word (scored by "
            "label-word likelihood); a seq2seq model learns to generate the label word from it (scored "
            "by exact match), e.g. 'sentiment: {text}' for T5.",
            _NON_EMPTY,
        ),
    )
    label_words: list[str] | None = field(
        default=None,
        metadata=_meta(
            "Classification with a causal LM or a seq2seq model: one word per label; null uses the "
            "label names."
        ),
    )
    block_chars: int = field(
        default=1000,
        metadata=_meta("Language modelling: characters per text block (lines are never split).", _ge(16)),
    )
    max_length: int = field(default=128, metadata=_meta("Maximum tokenised sequence length.", _ge(8)))
    max_train_samples: int | None = field(
        default=None, metadata=_meta("Use at most this many training examples; null uses all.", _ge(1))
    )
    max_eval_samples: int | None = field(
        default=None, metadata=_meta("Use at most this many evaluation examples; null uses all.", _ge(1))
    )

    def _cross_check(self) -> None:
        if self.task == "" and self.train_file is None:
            raise ConfigError(
                "data.train_file: must be set when data.task is '' (or name a task in data.task)",
                "data.train_file",
            )


@dataclass(kw_only=True)
class AptuneConfig(_Section):
    """Configuration of a whole aptune run.

    Build it from a mapping with :meth:`from_dict`, from a file with :func:`load_config`, or directly
    (``AptuneConfig(pruning=PruningConfig(target_sparsity=0.4))``); every route validates.
    """

    model: ModelConfig = field(default_factory=ModelConfig, metadata=_meta("Model and adapters."))
    pruning: PruningConfig = field(default_factory=PruningConfig, metadata=_meta("Structured pruning."))
    tuning: TuningConfig = field(default_factory=TuningConfig, metadata=_meta("Adaptive rank growth."))
    distill: DistillConfig = field(default_factory=DistillConfig, metadata=_meta("Self-distillation."))
    train: TrainConfig = field(default_factory=TrainConfig, metadata=_meta("Training loop."))
    data: DataConfig = field(default_factory=DataConfig, metadata=_meta("Task and data."))

    def _cross_check(self) -> None:
        task_type, head = self.data.task_type, self.model.head
        if task_type in ("instruction", "language-modeling") and head != "causal-lm":
            raise ConfigError(
                f"model.head: data.task_type {task_type!r} needs a causal LM; set model.head to "
                "'causal-lm' (and a decoder model such as builtin:smollm2)",
                "model.head",
            )
        if task_type == "seq2seq" and head != "seq2seq":
            raise ConfigError(
                "model.head: data.task_type 'seq2seq' needs an encoder-decoder; set model.head to "
                "'seq2seq' (and a T5 model such as t5-small)",
                "model.head",
            )
        rank, max_rank = self.model.adapter.rank, self.tuning.max_rank
        if max_rank < rank:
            raise ConfigError(
                f"tuning.max_rank: must be >= model.adapter.rank ({rank}), got {max_rank}", "tuning.max_rank"
            )


# ----------------------------------------------------------------------------------------------------
# Options listing
# ----------------------------------------------------------------------------------------------------


def describe_options() -> list[tuple[str, str, object, str]]:
    """List every leaf option as ``(dotted key, type, default, help)``, in declaration order.

    The help text ends with the allowed range where one applies, e.g. ``"... Must be in [0, 1)."``.
    """
    return list(_iter_options(AptuneConfig, ""))


def _iter_options(cls: type, path: str) -> Iterator[tuple[str, str, object, str]]:
    hints = _hints(cls)
    for f in fields(cls):
        key, tp = _join(path, f.name), hints[f.name]
        if _is_section(tp):
            yield from _iter_options(tp, key)
            continue
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        text = f.metadata["help"]
        check: _Check | None = f.metadata["check"]
        if check is not None:
            nullable = " or null" if NoneType in get_args(tp) else ""
            text = f"{text} Must be {check.text}{nullable}."
        yield key, _type_str(tp), default, text


# ----------------------------------------------------------------------------------------------------
# Files and overrides
# ----------------------------------------------------------------------------------------------------

_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans (true/false only) and exponent floats like ``5e-4``."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


class _YamlDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that also quotes strings that :class:`_YamlLoader` would read as floats."""


_YamlLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:[tT]rue|TRUE|[fF]alse|FALSE)$"), list("tTfF"))
_YamlLoader.add_implicit_resolver(_FLOAT_TAG, _EXP_FLOAT, list("-+.0123456789"))
_YamlDumper.add_implicit_resolver(_FLOAT_TAG, _EXP_FLOAT, list("-+.0123456789"))

# What YAML/JSON parsers raise on bad input: syntax errors (YAMLError, JSONDecodeError), impossible
# values such as the date 2020-13-45 (ValueError) and absurd nesting depth (RecursionError).
_PARSE_ERRORS = (yaml.YAMLError, ValueError, RecursionError)


def _parse_problem(err: Exception) -> str:
    """A parser error on one line: where it is and what is wrong."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        context = f" ({err.context})" if err.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {err.problem}{context}"
    if isinstance(err, json.JSONDecodeError):
        return f"line {err.lineno}, column {err.colno}: {err.msg}"
    return " ".join(str(err).split())


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


def _file_format(path: Path) -> Literal["yaml", "json"]:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise ConfigError(f"{path}: unsupported config file extension {suffix!r}; use .yaml, .yml or .json")


def load_config(path: str | os.PathLike[str]) -> AptuneConfig:
    """Read and validate a YAML (``.yaml``/``.yml``) or JSON (``.json``) config file.

    Options missing from the file take their defaults; an empty file gives the default config.

    Raises:
        ConfigError: for an unsupported extension, an unreadable file, a syntax error, a top level that
            is not a mapping, or any invalid option (the message then starts with the file path).
    """
    path = Path(path)
    fmt = _file_format(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file '{path}': {err}") from err
    if not text.strip():
        return AptuneConfig()
    try:
        data = json.loads(text) if fmt == "json" else _yaml_load(text)
    except _PARSE_ERRORS as err:
        raise ConfigError(f"{path}: invalid {fmt.upper()} at {_parse_problem(err)}") from err
    if data is None:
        return AptuneConfig()
    try:
        return AptuneConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}", err.key) from err


def save_config(cfg: AptuneConfig, path: str | os.PathLike[str]) -> None:
    """Validate ``cfg`` and write it atomically as YAML or JSON, chosen by the file extension.

    The text goes to a temporary file in the target directory (created if missing), which then
    replaces ``path`` with ``os.replace``, so readers never see a partly written file.
    """
    path = Path(path)
    fmt = _file_format(path)
    cfg.validate()
    data = cfg.to_dict()
    if fmt == "json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.dump(data, Dumper=_YamlDumper, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def apply_overrides(cfg: AptuneConfig, overrides: Iterable[str]) -> AptuneConfig:
    """Return a new validated config with ``"section.key=value"`` overrides applied in order.

    Keys are dotted paths to a leaf option (``model.adapter.rank=16``); values are parsed as YAML, so
    ``0.5``, ``5e-4``, ``true``, ``null`` and ``[query, value]`` work (quote strings that look like
    numbers, e.g. ``data.task='2024'``).  ``cfg`` itself is not modified.

    Raises:
        ConfigError: for a malformed override (no ``=``, empty key or key part, unparsable value), a key
            naming a whole section, an unknown key (with a suggestion) or an invalid resulting config.
    """
    data = cfg.to_dict()
    for item in overrides:
        key, value = _parse_override(item)
        _set_path(data, key.split("."), value)
    return AptuneConfig.from_dict(data)


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or "" in key.split("."):
        raise ConfigError(f"malformed override {item!r}: expected 'section.key=value'", key)
    try:
        return key, _yaml_load(raw)
    except _PARSE_ERRORS as err:
        raise ConfigError(f"{key}: cannot parse override value {raw!r}: {_parse_problem(err)}", key) from err


def _set_path(data: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set ``value`` at ``parts`` in the nested dict; unknown keys are left for ``from_dict`` to report."""
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            option = ".".join(parts[: depth + 1])
            target = ".".join(parts)
            raise ConfigError(f"{option}: is an option, not a section; cannot set '{target}'", option)
        node = child
    key = ".".join(parts)
    if isinstance(node.get(parts[-1]), dict):
        raise ConfigError(f"{key}: is a section; override its options one by one, e.g. '{key}.<option>'", key)
    node[parts[-1]] = value
