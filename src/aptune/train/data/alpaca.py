"""Stanford Alpaca instruction data: a JSON list of records, or JSON Lines, as causal-LM examples."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .examples import DataError, LmExample
from .tables import read_text

__all__ = ["ALPACA_PROMPT", "ALPACA_PROMPT_NO_INPUT", "read_alpaca"]

ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def _json_document(text: str, path: Path) -> Any | None:
    """The file parsed as one JSON document, or None when it is JSON Lines (always for ``.jsonl``)."""
    if path.suffix.lower() == ".jsonl":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        if text.lstrip().startswith("["):
            raise DataError(
                f"malformed JSON in '{path}' at line {err.lineno}, column {err.colno} ({err.msg}); "
                "fix the JSON syntax"
            ) from err
        return None


def _json_line(line: str, number: int, path: Path) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(
            f"malformed JSON on line {number} of '{path}' ({err.msg}); each line must hold one complete "
            "JSON object (JSON Lines), or write the whole file as one JSON list"
        ) from err


def _json_records(text: str, path: Path) -> list[tuple[str, Any]]:
    """``(where, value)`` of each record, ``where`` naming it in messages ("record 3 (line 4)")."""
    document = _json_document(text, path)
    if document is None:
        lines = [(number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip()]
        return [
            (f"record {i} (line {number})", _json_line(line, number, path))
            for i, (number, line) in enumerate(lines, 1)
        ]
    if not isinstance(document, list):
        raise DataError(
            f"'{path}' holds a JSON {type(document).__name__}, not a list of records; write a JSON list "
            '[{"instruction": ..., "output": ...}, ...] or one object per line in a .jsonl file'
        )
    return [(f"record {i}", value) for i, value in enumerate(document, 1)]


def _string(record: dict[str, Any], key: str, where: str, path: Path, required: bool) -> str:
    """``record[key]``: a non-empty string when ``required``, else a string or "" when absent / null."""
    value = record.get(key)
    if value is None and not required:
        return ""
    if value is None:
        raise DataError(
            f"{where} of '{path}' has no {key!r}; every record needs non-empty 'instruction' and "
            "'output' strings"
        )
    if not isinstance(value, str):
        raise DataError(
            f"{where} of '{path}': {key!r} is a {type(value).__name__}, not a string; write it as a "
            "JSON string"
        )
    if required and not value.strip():
        raise DataError(f"{where} of '{path}' has an empty {key!r}; fill it in or remove the record")
    return value


def _alpaca_example(record: Any, where: str, path: Path) -> LmExample:
    if not isinstance(record, dict):
        raise DataError(
            f"{where} of '{path}' is a {type(record).__name__}, not a JSON object; write each example "
            'as an object such as {"instruction": "...", "input": "...", "output": "..."}'
        )
    instruction = _string(record, "instruction", where, path, required=True)
    output = _string(record, "output", where, path, required=True)
    context = _string(record, "input", where, path, required=False)
    if context.strip():
        prompt = ALPACA_PROMPT.format(instruction=instruction, input=context)
    else:
        prompt = ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)
    return LmExample(prompt, output)


def read_alpaca(path: str | os.PathLike[str]) -> list[LmExample]:
    """Alpaca instruction data: a JSON list of objects, or JSON Lines (one object per line).

    Each record needs non-empty ``instruction`` and ``output`` strings; ``input`` is optional (missing,
    null or blank selects :data:`ALPACA_PROMPT_NO_INPUT`).  The prompt is the filled-in template, which
    ends in ``"### Response:\\n"``, and the response is ``output`` unchanged.  A ``.jsonl`` file is
    always read as JSON Lines; any other file as one JSON document when it parses as one.

    Raises:
        DataError: naming the file and the record for unreadable files, invalid JSON, a document that is
            not a list, records that are not objects, and missing, non-string or empty fields.
    """
    file = Path(path)
    text = read_text(file)
    records = _json_records(text, file) if text.strip() else []
    if not records:
        raise DataError(
            f"'{file}' has no records; it needs a JSON list of objects with 'instruction', optional "
            "'input' and 'output' (or one such object per line)"
        )
    return [_alpaca_example(record, where, file) for where, record in records]
