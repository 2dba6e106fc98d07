"""Local data files read into column tables: CSV, TSV (unquoted), JSON lists and JSON Lines.

:func:`read_text` is the one way every reader opens a file (UTF-8, a BOM ignored); :func:`read_table`
turns a ``.csv`` / ``.tsv`` / ``.json`` / ``.jsonl`` file into a :class:`Table` of raw column values.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .examples import DataError

__all__ = ["FORMATS", "Table", "read_table", "read_text"]

FORMATS = {
    ".csv": "a header row, then one row per example",
    ".tsv": "a header row, then one tab-separated row per example",
    ".jsonl": "one JSON object per line",
    ".json": "a JSON list of objects or one JSON object per line",
}


@dataclass(frozen=True)
class Table:
    """Column-wise raw values of one split; ``source`` names it in messages (a path or ``task[split]``)."""

    source: str
    names: list[str]
    columns: dict[str, list[Any]]


def read_text(path: Path, key: str | None = None) -> str:
    """The UTF-8 text of ``path`` (line endings kept); messages start with the config ``key`` if given."""
    prefix = "" if key is None else f"{key}: "
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return f.read()
    except UnicodeDecodeError as err:
        raise DataError(
            f"{prefix}cannot decode '{path}' as UTF-8 ({err.reason} at byte {err.start}); "
            "save the file with UTF-8 encoding"
        ) from err
    except OSError as err:
        fix = "check the path" if key is None else f"point {key} to a readable file"
        raise DataError(f"{prefix}cannot read '{path}' ({err.strerror or err}); {fix}") from err


def _read_delimited(text: str, path: Path, key: str) -> Table:
    tsv = path.suffix.lower() == ".tsv"
    # TSV has no quoting (quote characters are text, as in GLUE's files); CSV follows RFC 4180.
    quoting = csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if tsv else ",", quoting=quoting)
    try:
        records = list(reader)
    except csv.Error as err:
        raise DataError(
            f"{key}: malformed {'TSV' if tsv else 'CSV'} in '{path}' near line {reader.line_num} ({err}); "
            "fix the quoting of that row"
        ) from err
    names = list(reader.fieldnames or [])
    return Table(str(path), names, {name: [r.get(name) for r in records] for name in names})


def _read_json(text: str, path: Path, key: str) -> Table:
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{key}: malformed JSON in '{path}' at line {err.lineno}, column {err.colno} ({err.msg}); "
                "fix the JSON syntax"
            ) from err
    else:
        lines = enumerate(text.split("\n"), 1)
        records = [_json_line(line, number, path, key) for number, line in lines if line.strip()]
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(
                f"{key}: record {number} of '{path}' is a {type(record).__name__}, not a JSON object; "
                'write each example as an object such as {"text": "...", "label": "..."}'
            )
    names = list(dict.fromkeys(name for record in records for name in record))
    return Table(str(path), names, {name: [r.get(name) for r in records] for name in names})


def _json_line(line: str, number: int, path: Path, key: str) -> Any:
    """The value on one (non-blank) JSON Lines line."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{key}: malformed JSON on line {number} of '{path}' ({err.msg}); each line must hold one "
            "complete JSON object (JSON Lines)"
        ) from err


def read_table(file: str, key: str) -> Table:
    """The columns of a local data file; ``key`` (``data.train_file``, ``--data``) names it in messages."""
    path = Path(file)
    if not path.exists():
        where = "" if path.is_absolute() else f" (relative paths start at {Path.cwd()})"
        raise DataError(f"{key}: file not found: '{file}'; fix the path in {key}{where}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"{key}: unsupported file extension {suffix or '(none)'!r} of '{file}'; "
            f"use {', '.join(FORMATS)} files"
        )
    text = read_text(path, key)
    if not text.strip():
        raise DataError(f"{key}: '{file}' is empty; it needs {FORMATS[suffix]}")
    table = _read_delimited(text, path, key) if suffix in (".csv", ".tsv") else _read_json(text, path, key)
    if not any(table.columns.values()):
        raise DataError(f"{key}: '{file}' has no examples; it needs {FORMATS[suffix]}")
    return table
