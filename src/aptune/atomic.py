"""Atomic writes: a file or folder appears complete under its final name, or not at all.

Everything aptune writes (configs, metrics, model folders, checkpoints, reports) is built under a
temporary name in the destination folder and renamed into place with `os.replace`, so an
interrupted run never leaves a half-written file behind a name a reader trusts. The temporary
names are created private (`mkstemp` / `mkdtemp`); before the rename they get the permissions a
plain `open` would have given under the process's umask, so a serving process under another user
can read the outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync(path: str | os.PathLike) -> None:
    """Flush the file or folder `path` to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def staged_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block ends without error, the file written
    there replaces `path` (with umask permissions), else it is deleted."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync(tmp)  # the bytes are on disk before the name points at them
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def staged_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder next to `path`; when the block ends without error, it replaces
    `path` (an existing folder there is removed first), else it is deleted."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with staged_file(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with staged_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, payload: object) -> None:
    """Write `payload` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(payload, indent=2))
