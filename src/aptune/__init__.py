"""aptune: Adaptive Pruning and Tuning of pretrained language models.

import aptune
cfg = aptune.load_config("configs/minilm-rotten-tomatoes.yaml")
result = aptune.train(cfg, "runs/demo")            # fine-tune + prune + export
aptune.resume("runs/demo")                         # continue a killed run from its checkpoint
model = aptune.load_pruned(result.model_dir)       # the smaller dense model
"""

from .adapter import AptLinear, attach_adapters, merge_adapters
from .api import evaluate_model, load_model_dir, model_info, run_lm_eval
from .blocks import MaskPlan
from .config import (
    AptuneConfig,
    ConfigError,
    PruningConfig,
    apply_overrides,
    describe_options,
    load_config,
    save_config,
)
from .errors import AptuneError
from .families import family_for
from .pruner import Pruner
from .salience import OutlierAwareSalience
from .search import PlanError, plan_masks
from .shrink import ModelDirError, is_stock, load_pruned, save_pruned, shrink_model
from .train.checkpoint import CheckpointError
from .train.data import DataError
from .train.loop import RunResult, SetupError, TrainingError, resume, train

__version__ = "0.1.0"

__all__ = [
    "AptLinear",
    "AptuneConfig",
    "AptuneError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MaskPlan",
    "ModelDirError",
    "OutlierAwareSalience",
    "PlanError",
    "Pruner",
    "PruningConfig",
    "RunResult",
    "SetupError",
    "TrainingError",
    "__version__",
    "apply_overrides",
    "attach_adapters",
    "describe_options",
    "evaluate_model",
    "family_for",
    "is_stock",
    "load_config",
    "load_model_dir",
    "load_pruned",
    "merge_adapters",
    "model_info",
    "plan_masks",
    "resume",
    "run_lm_eval",
    "save_config",
    "save_pruned",
    "shrink_model",
    "train",
]
