"""Periodic training checkpoints: atomic, checksummed, and restorable bit for bit.

A checkpoint is a directory `OUTPUT/checkpoints/step-000123/` (the state after 123 steps) with

* `model.safetensors`: every model tensor in its current, physically pruned shape (adapters too);
* `state.safetensors`: every other tensor (optimizer moments, mask values and targets, smoothed
  salience, the teacher's and the best validation state's weights, distillation maps, RNG states);
* `state.json`: everything else (step, shapes, adapter ranks, optimizer, scheduler and loss-scaler
  settings, adapter importance, validation scores of the kept weights, whether the recovery phase
  has begun, Python and NumPy RNG states, where `history.jsonl` ended), with tensors referenced by
  name. The run state is the run's own `state_dict()`; this module only serialises it;
* `manifest.json`, written last: the format, the step, and the size and SHA-256 of every file.

The directory is assembled under a temporary name, its files are flushed to disk, and only then is
it renamed into place. A killed run therefore never leaves a directory named `step-*` half
written. `latest_checkpoint` still verifies every manifest and skips, with a warning, a checkpoint
whose files are missing or fail their checksum. Nothing is pickled: tensors go through safetensors,
everything else through JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file

from ..atomic import fsync, staged_dir
from ..errors import AptuneError
from ..shrink import save_weights

FORMAT = "aptune.checkpoint"
FORMAT_VERSION = 3
CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
_NAME = re.compile(r"step-(\d{6,})")
_FILES = ("model.safetensors", "state.safetensors", "state.json")

log = logging.getLogger("aptune")


class CheckpointError(AptuneError):
    """A run cannot be resumed from its checkpoints."""


@dataclass
class Progress:
    """Loop state saved with a checkpoint besides the run's own state."""

    step: int
    history_bytes: int
    elapsed_s: float
    last_eval: dict[str, float]
    config: dict[str, Any]
    loss_window: dict[str, Any]


# ---- JSON + tensors, without pickle -----------------------------------------------------------


def _flatten(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """`obj` as JSON data; its tensors (and NumPy arrays) move to `tensors` under unique keys."""
    if torch.is_tensor(obj):
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        tensors[key] = torch.from_numpy(obj.astype(np.int64))
        return {"__ndarray__": key, "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        return {"__items__": [[_flatten(k, f"{key}.k{i}", tensors), _flatten(v, f"{key}.{i}", tensors)]
                              for i, (k, v) in enumerate(obj.items())]}  # fmt: skip
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {key}")


def _unflatten(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of `_flatten`."""
    if isinstance(data, list):
        return [_unflatten(v, tensors) for v in data]
    if not isinstance(data, dict):
        return data
    if "__tensor__" in data:
        return tensors[data["__tensor__"]]
    if "__ndarray__" in data:
        return tensors[data["__ndarray__"]].numpy().astype(data["dtype"])
    if "__tuple__" in data:
        return tuple(_unflatten(v, tensors) for v in data["__tuple__"])
    return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in data["__items__"]}


# ---- what a run is made of --------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_state(run, progress: Progress) -> dict[str, Any]:
    """Everything besides the model weights that continues `run` exactly (tensors included)."""
    return {
        "step": progress.step,
        "history_bytes": progress.history_bytes,
        "elapsed_s": progress.elapsed_s,
        "last_eval": progress.last_eval,
        "config": progress.config,
        "loss_window": progress.loss_window,
        "run": run.state_dict(),
        "rng": _rng_state(),
    }


# ---- writing ----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_files(tmp: Path, state: Any, tensors: dict[str, torch.Tensor], model, step: int) -> None:
    """The checkpoint's files in folder `tmp`, each flushed to disk, the manifest last."""
    save_weights(model, tmp / "model.safetensors")
    save_file(tensors, str(tmp / "state.safetensors"), metadata={"format": "pt"})
    (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
    files = {}
    for name in _FILES:
        fsync(tmp / name)
        files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)}
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "step": step, "files": files}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    fsync(tmp / MANIFEST)


def save_checkpoint(run, out: Path, progress: Progress, keep: int) -> Path | None:
    """Write the checkpoint of `run` after `progress.step` steps to `out/checkpoints/`, atomically,
    and delete all but the `keep` newest; returns its directory. Every process of a data-parallel
    run calls it; the main one writes."""
    state = run_state(run, progress)
    if not run.acc.is_main_process:
        return None
    root = out / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{progress.step:06d}"
    with staged_dir(final) as tmp:
        _write_files(tmp, _flatten(state, "s", tensors := {}), tensors, run.model, progress.step)
    fsync(root)
    _rotate(root, keep)
    return final


def _checkpoint_dirs(root: Path) -> list[Path]:
    """`step-*` directories directly inside `root` (no links), oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def remove_partial(out: Path) -> list[Path]:
    """Delete the temporary directories of checkpoints whose writing was interrupted; returns them."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    partial = [p for p in root.glob(".step-*.tmp-*") if p.is_dir() and not p.is_symlink()]
    for path in partial:
        shutil.rmtree(path)
    return partial


def _rotate(root: Path, keep: int) -> None:
    for old in _checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old)


# ---- reading ----------------------------------------------------------------------------------


def _problem(path: Path) -> str | None:
    """Why checkpoint `path` cannot be used, or None when it is complete and intact."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"its {MANIFEST} is missing or unreadable ({exc})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"its {MANIFEST} is not an aptune checkpoint manifest"
    if manifest.get("version") != FORMAT_VERSION:
        return f"it has format version {manifest.get('version')}; this aptune reads {FORMAT_VERSION}"
    for name in _FILES:
        entry = manifest.get("files", {}).get(name)
        file = path / name
        if not isinstance(entry, dict) or not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != entry.get("bytes") or _sha256(file) != entry.get("sha256"):
            return f"{name} does not match its checksum (the file is damaged)"
    return None


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete and intact checkpoint of the run in `out`; damaged ones are skipped
    with a warning."""
    for path in reversed(_checkpoint_dirs(out / CHECKPOINTS)):
        problem = _problem(path)
        if problem is None:
            return path
        log.warning("skipping checkpoint %s: %s", path, problem)
    return None


def read_state(path: Path) -> dict[str, Any]:
    """The run state of checkpoint `path` (JSON and tensors joined)."""
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    return _unflatten(state, load_file(str(path / "state.safetensors")))


def restore(run, path: Path, state: dict[str, Any]) -> None:
    """Bring a freshly built `run` (same config) to checkpoint `path`, whose state is `state`: the
    run takes its state (shapes first), then the weights and the RNG states are loaded."""
    run.load_state_dict(state["run"], state["step"])
    missing, unexpected = load_model(run.model, str(path / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path / 'model.safetensors'} does not fit the model built from config.yaml: missing "
            f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}; was config.yaml edited?"
        )
    _set_rng_state(state["rng"])
