"""aptune: Adaptive Pruning and Tuning of pretrained language models.

import aptune
cfg = aptune.load_config("configs/minilm-rotten-tomatoes.yaml")
result = aptune.train(cfg, "runs/demo")            # fine-tune + prune + export
aptune.resume("runs/demo")                         # continue a killed run from its checkpoint
model = aptune.load_pruned(result.model_dir)       # the smaller dense model

apt = aptune.prepare(hf_model, cfg)                # or inside a transformers.Trainer script:
trainer = aptune.AptTrainer(model=hf_model, args=args, train_dataset=train, callbacks=[apt])

Each public name is imported from its module on first use, so `import aptune` (and the `aptune`
command's `--help` and `--version`) does not load torch or transformers.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

_EXPORTS = {
    "AptLinear": "adapter",
    "attach_adapters": "adapter",
    "merge_adapters": "adapter",
    "evaluate_model": "api",
    "load_model_dir": "api",
    "model_info": "api",
    "predict": "api",
    "run_lm_eval": "api",
    "MaskPlan": "blocks",
    "model_card": "card",
    "write_model_card": "card",
    "AptuneConfig": "config",
    "ConfigError": "config",
    "PruningConfig": "config",
    "apply_overrides": "config",
    "describe_options": "config",
    "load_config": "config",
    "save_config": "config",
    "AptuneError": "errors",
    "family_for": "families",
    "OnnxExportError": "onnx_runtime",
    "export_onnx": "onnx_export",
    "load_onnx_dir": "onnx_runtime",
    "Pruner": "pruner",
    "OutlierAwareSalience": "salience",
    "PlanError": "search",
    "plan_masks": "search",
    "ModelDirError": "shrink",
    "is_stock": "shrink",
    "load_pruned": "shrink",
    "save_pruned": "shrink",
    "shrink_model": "shrink",
    "CheckpointError": "train.checkpoint",
    "DataError": "train.data",
    "RunResult": "train.loop",
    "SetupError": "train.loop",
    "TrainingError": "train.loop",
    "resume": "train.loop",
    "train": "train.loop",
    "AptCallback": "train.trainer",
    "AptConfig": "train.trainer",
    "AptTrainer": "train.trainer",
    "prepare": "train.trainer",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(types.ModuleType):
    """The `aptune` module. Importing a submodule binds it as an attribute of its package; the
    public function `aptune.train` keeps its name when the subpackage `aptune.train` is imported."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
