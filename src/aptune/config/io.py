"""Config files and command-line overrides: YAML/JSON load and save with readable errors, ``--set``.

YAML is read with a subclass of ``yaml.SafeLoader`` that differs from ``yaml.safe_load`` in two
YAML-1.2 style ways: exponent floats without a dot or sign (``5e-4``) are floats rather than strings,
and only ``true``/``false`` are booleans, so ``mixed_precision: no`` stays the string ``"no"``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from ..atomic import write_text
from .sections import AptuneConfig
from .validation import ConfigError

_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans (true/false only) and exponent floats like ``5e-4``."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


class _YamlDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that also quotes strings that :class:`_YamlLoader` would read as floats."""


_YamlLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:[tT]rue|TRUE|[fF]alse|FALSE)$"), list("tTfF"))
_YamlLoader.add_implicit_resolver(_FLOAT_TAG, _EXP_FLOAT, list("-+.0123456789"))
_YamlDumper.add_implicit_resolver(_FLOAT_TAG, _EXP_FLOAT, list("-+.0123456789"))

# What YAML/JSON parsers raise on bad input: syntax errors (YAMLError, JSONDecodeError), impossible
# values such as the date 2020-13-45 (ValueError) and absurd nesting depth (RecursionError).
_PARSE_ERRORS = (yaml.YAMLError, ValueError, RecursionError)


def _parse_problem(err: Exception) -> str:
    """A parser error on one line: where it is and what is wrong."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        context = f" ({err.context})" if err.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {err.problem}{context}"
    if isinstance(err, json.JSONDecodeError):
        return f"line {err.lineno}, column {err.colno}: {err.msg}"
    return " ".join(str(err).split())


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


def _file_format(path: Path) -> Literal["yaml", "json"]:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise ConfigError(f"{path}: unsupported config file extension {suffix!r}; use .yaml, .yml or .json")


def load_config(path: str | os.PathLike[str]) -> AptuneConfig:
    """Read and validate a YAML (``.yaml``/``.yml``) or JSON (``.json``) config file.

    Options missing from the file take their defaults; an empty file gives the default config.

    Raises:
        ConfigError: for an unsupported extension, an unreadable file, a syntax error, a top level that
            is not a mapping, or any invalid option (the message then starts with the file path).
    """
    path = Path(path)
    fmt = _file_format(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file '{path}': {err}") from err
    if not text.strip():
        return AptuneConfig()
    try:
        data = json.loads(text) if fmt == "json" else _yaml_load(text)
    except _PARSE_ERRORS as err:
        raise ConfigError(f"{path}: invalid {fmt.upper()} at {_parse_problem(err)}") from err
    if data is None:
        return AptuneConfig()
    try:
        return AptuneConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}", err.key) from err


def save_config(cfg: AptuneConfig, path: str | os.PathLike[str]) -> None:
    """Validate ``cfg`` and write it atomically as YAML or JSON, chosen by the file extension.

    The text goes to a temporary file in the target directory (created if missing), which then
    replaces ``path`` (`aptune.atomic`), so readers never see a partly written file.
    """
    path = Path(path)
    fmt = _file_format(path)
    cfg.validate()
    data = cfg.to_dict()
    if fmt == "json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.dump(data, Dumper=_YamlDumper, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)


def apply_overrides(cfg: AptuneConfig, overrides: Iterable[str]) -> AptuneConfig:
    """Return a new validated config with ``"section.key=value"`` overrides applied in order.

    Keys are dotted paths to a leaf option (``model.adapter.rank=16``); values are parsed as YAML, so
    ``0.5``, ``5e-4``, ``true``, ``null`` and ``[query, value]`` work (quote strings that look like
    numbers, e.g. ``data.task='2024'``).  ``cfg`` itself is not modified.

    Raises:
        ConfigError: for a malformed override (no ``=``, empty key or key part, unparsable value), a key
            naming a whole section, an unknown key (with a suggestion) or an invalid resulting config.
    """
    data = cfg.to_dict()
    for item in overrides:
        key, value = _parse_override(item)
        _set_path(data, key.split("."), value)
    return AptuneConfig.from_dict(data)


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or "" in key.split("."):
        raise ConfigError(f"malformed override {item!r}: expected 'section.key=value'", key)
    try:
        return key, _yaml_load(raw)
    except _PARSE_ERRORS as err:
        raise ConfigError(f"{key}: cannot parse override value {raw!r}: {_parse_problem(err)}", key) from err


def _set_path(data: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set ``value`` at ``parts`` in the nested dict; unknown keys are left for ``from_dict`` to report."""
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            option = ".".join(parts[: depth + 1])
            target = ".".join(parts)
            raise ConfigError(f"{option}: is an option, not a section; cannot set '{target}'", option)
        node = child
    key = ".".join(parts)
    if isinstance(node.get(parts[-1]), dict):
        raise ConfigError(
            f"{key}: is a section; override its options one by one, e.g. '{key}.<option>'",
            key,
        )
    node[parts[-1]] = value
