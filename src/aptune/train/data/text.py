"""Plain text for language modelling, cut into blocks of at most a given number of characters."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

from .examples import DataError, LmExample
from .tables import read_text

__all__ = ["read_text_blocks"]


def _split_line(line: str, max_chars: int) -> list[str]:
    """``line`` itself, or pieces of at most ``max_chars`` cut at whitespace (inside words if need be)."""
    if len(line) <= max_chars:
        return [line]
    return textwrap.wrap(line, max_chars, break_on_hyphens=False)


def _pack(units: list[str], max_chars: int) -> Iterator[str]:
    """Join consecutive ``units`` with newlines into blocks of at most ``max_chars`` characters."""
    block = units[0]
    for unit in units[1:]:
        if len(block) + 1 + len(unit) <= max_chars:
            block += "\n" + unit
        else:
            yield block
            block = unit
    yield block


def read_text_blocks(path_or_text: str | os.PathLike[str], max_chars: int) -> list[LmExample]:
    """Plain text for language modelling, cut into blocks of at most ``max_chars`` characters.

    ``path_or_text`` is the text itself (a ``str``) or a file to read (a :class:`~pathlib.Path` or other
    ``os.PathLike``).  Blank lines are dropped and the remaining lines, stripped of trailing whitespace,
    are packed in order into newline-joined blocks.  A line is split only when it alone is longer than
    ``max_chars``: at whitespace, and inside a word only for words longer than ``max_chars``.  Each
    block becomes ``LmExample(prompt="", response=block)``.

    Raises:
        ValueError: if ``max_chars`` < 1.
        DataError: if the file cannot be read or there is no text.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    if isinstance(path_or_text, os.PathLike):
        text, source = read_text(Path(path_or_text)), f"'{path_or_text}'"
    else:
        text, source = path_or_text, "the text given to read_text_blocks"
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{source} has no text (only blank lines); give it some text to model")
    units = [piece for line in lines for piece in _split_line(line, max_chars)]
    return [LmExample("", block) for block in _pack(units, max_chars)]
