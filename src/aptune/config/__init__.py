"""Typed, validated configuration for a whole aptune run.

A run is described by :class:`AptuneConfig`, a tree of sections (``model``, ``pruning``, ``tuning``,
``distill``, ``train``, ``data``).  Every leaf option carries a help text and, where it applies, an
allowed range, so :func:`describe_options` can document all options.

Configs are read from YAML or JSON with :func:`load_config`, written with :func:`save_config` and
adjusted from the command line with :func:`apply_overrides` (``"model.adapter.rank=16"``).  Every
problem is reported as a :class:`ConfigError` naming the dotted key, what is wrong and what is allowed.

Modules: ``sections`` (the options), ``validation`` (type and range checks, error wording), ``io``
(files and overrides).
"""

from .io import apply_overrides, load_config, save_config
from .sections import (
    AdapterConfig,
    AptuneConfig,
    DataConfig,
    DistillConfig,
    ModelConfig,
    PruningConfig,
    TrainConfig,
    TuningConfig,
    describe_options,
)
from .validation import ConfigError

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
