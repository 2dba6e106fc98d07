"""Validation machinery of the config sections: errors, range checks and the pydantic glue.

Pydantic checks the types (strictly: no ``"1"`` for ints, no ``True`` for numbers, ints accepted and
normalised for floats); :class:`Section` turns its errors into a :class:`ConfigError` that names the
dotted key, and adds the ranges, duplicate checks and cross-field rules of each section.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from ..errors import AptuneError


class ConfigError(AptuneError):
    """An invalid configuration value, key or file.

    The message names the dotted key (for example ``pruning.target_sparsity``), what is wrong and
    what is allowed; ``key`` holds the dotted key, or ``""`` for problems with a file as a whole.
    """

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Check:
    """A value constraint: ``ok(value)`` tells whether it holds, ``text`` describes it for humans."""

    ok: Callable[[Any], bool]
    text: str


def ge(lo: int) -> Check:
    """Values ``>= lo``."""
    return Check(lambda v: v >= lo, f">= {lo}")


def gt(lo: int) -> Check:
    """Values ``> lo``."""
    return Check(lambda v: v > lo, f"> {lo}")


UNIT_CLOSED_OPEN = Check(lambda v: 0 <= v < 1, "in [0, 1)")
UNIT_OPEN_CLOSED = Check(lambda v: 0 < v <= 1, "in (0, 1]")
UNIT_CLOSED = Check(lambda v: 0 <= v <= 1, "in [0, 1]")
NON_EMPTY = Check(lambda v: v.strip() != "", "a non-empty string")
STEP = Check(
    lambda v: 0 <= v <= 1 if isinstance(v, float) else v >= 0,
    "an int step >= 0 or a float fraction of total steps in [0, 1]",
)


def option(default: Any, text: str, check: Check | None = None) -> Any:
    """A leaf option: its default, help text and allowed range (mutable defaults are copied per use)."""
    return Field(default, description=text, json_schema_extra={"check": check})  # type: ignore[dict-item]


def section(cls: type[Section], text: str) -> Any:
    """A nested section, built with its defaults when missing."""
    return Field(default_factory=cls, description=text)


_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


def describe(value: Any) -> str:
    """A value for error messages: its type and a shortened repr."""
    return "null" if value is None else f"{type(value).__name__} {_short.repr(value)}"


def type_str(tp: Any) -> str:
    """Render a field annotation for humans, e.g. ``int | None`` or ``Literal['no', 'fp16']``."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin in (Union, UnionType):
        return " | ".join(type_str(a) for a in args)
    if origin is list:
        return f"list[{type_str(args[0])}]"
    return "None" if tp is NoneType else tp.__name__


def join(path: str, key: str) -> str:
    """The dotted key of option ``key`` in the section at ``path``."""
    return f"{path}.{key}" if path else key


def is_section(tp: Any) -> bool:
    """Whether annotation ``tp`` is a config section."""
    return isinstance(tp, type) and issubclass(tp, Section)


_S = TypeVar("_S", bound="Section")
_SECTIONS: list[type[Section]] = []  # every section class, in definition order


class Section(BaseModel):
    """Base of all config sections: validation on construction, dict conversion.

    Pydantic checks each option's type, then :meth:`_check_range` its range (and that lists hold no
    duplicates), option by option, then :meth:`_cross_check` the rules that involve several options;
    every problem leaves as a :class:`ConfigError` naming the dotted key.
    """

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    _path: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _SECTIONS.append(cls)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise _config_error(type(self), err.errors(include_url=False)[0]) from None

    @field_validator("*")
    @classmethod
    def _check_range(cls, value: Any, info: ValidationInfo) -> Any:
        name = str(info.field_name)
        field, key = cls.model_fields[name], join(cls._path, name)
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ConfigError(f"{key}: must not contain duplicates, got {_short.repr(value)}", key)
        check = _check_of(field)
        if check is not None and value is not None and not check.ok(value):
            nullable = " or null" if NoneType in get_args(field.annotation) else ""
            raise ConfigError(f"{key}: must be {check.text}{nullable}, got {value!r}", key)
        return value

    @model_validator(mode="after")
    def _check_fields_together(self) -> Section:
        self._cross_check()
        return self

    def _cross_check(self) -> None:
        """Rules involving several options; sections with such rules override this."""

    def validate(self) -> None:  # type: ignore[override]
        """Check every option again (after in-place edits), normalising ints given for floats.

        Raises:
            ConfigError: naming the first offending dotted key.
        """
        values = dict(self)
        for value in values.values():
            if isinstance(value, Section):
                value.validate()
        for name, value in type(self)(**values):
            setattr(self, name, value)

    @classmethod
    def from_dict(cls: type[_S], data: Mapping[str, Any]) -> _S:
        """Build and validate a section from a (possibly partial) nested mapping.

        Missing options take their defaults.  Keys are taken in the mapping's order, each nested section
        built (and checked) as it comes, so the first problem reported is the first one in the input.
        Unknown keys, wrong types and out-of-range values raise :class:`ConfigError`; unknown keys come
        with the closest valid key(s) as a suggestion.
        """
        path = cls._path
        if not isinstance(data, Mapping):
            raise _not_a_mapping(path, data)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise ConfigError(f"{path or 'config'}: keys must be strings, got {_short.repr(key)}", path)
            if key not in cls.model_fields:
                raise _unknown_key(path, key, list(cls.model_fields))
            tp = cls.model_fields[key].annotation
            kwargs[key] = tp.from_dict(value) if is_section(tp) else value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Return the section as plain nested dicts/lists/scalars (JSON and YAML serialisable)."""
        return self.model_dump()


def _check_of(info: FieldInfo) -> Check | None:
    return (info.json_schema_extra or {}).get("check")  # type: ignore[union-attr,return-value]


def _not_a_mapping(path: str, data: Any) -> ConfigError:
    what = f"{path}: expected a mapping of options" if path else "top-level config must be a mapping"
    return ConfigError(f"{what}, got {describe(data)}", path)


def _config_error(cls: type[Section], error: ErrorDetails) -> ConfigError:
    """Pydantic's ``error`` about an option of section ``cls``, as a :class:`ConfigError` with its key."""
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):
        return cause
    kind, loc, value = error["type"], error["loc"], error["input"]
    key = join(cls._path, str(loc[0]))
    if kind == "extra_forbidden":
        return _unknown_key(cls._path, str(loc[0]), list(cls.model_fields))
    tp = cls.model_fields[str(loc[0])].annotation
    if is_section(tp):
        return _not_a_mapping(key, value)  # a mapping is checked by the section's own constructor
    lists = [a for a in (tp, *get_args(tp)) if get_origin(a) is list]
    if lists and (kind == "list_type" or len(loc) > 1):  # a list option, or one of its items
        tp = lists[0] if kind == "list_type" else get_args(lists[0])[0]
    if value is None:
        return ConfigError(f"{key}: must not be null; expected {type_str(tp)}", key)
    if kind == "literal_error":
        choices = ", ".join(map(repr, get_args(tp)))
        return ConfigError(f"{key}: must be one of {choices}, got {_short.repr(value)}", key)
    if kind == "finite_number" or (kind == "float_type" and type(value) is int):
        return ConfigError(f"{key}: must be a finite number, got {_short.repr(value)}", key)
    return ConfigError(f"{key}: expected {type_str(tp)}, got {describe(value)}", key)


def _unknown_key(path: str, key: str, valid: list[str]) -> ConfigError:
    dotted = join(path, key)
    elsewhere = [join(cls._path, key) for cls in _SECTIONS if _is_leaf(cls, key)]
    close = elsewhere + [join(path, name) for name in difflib.get_close_matches(key, valid, n=3)]
    if close:
        hint = "did you mean " + " or ".join(map(repr, close)) + "?"
    else:
        where = f"in '{path}'" if path else "at top level"
        hint = f"valid keys {where} are: {', '.join(valid)}"
    return ConfigError(f"unknown key {dotted!r}; {hint}", dotted)


def _is_leaf(cls: type[Section], key: str) -> bool:
    return key in cls.model_fields and not is_section(cls.model_fields[key].annotation)


def iter_options(cls: type[Section], path: str) -> Iterator[tuple[str, str, object, str]]:
    """Every leaf option of section ``cls`` as ``(dotted key, type, default, help)``, in order."""
    for name, info in cls.model_fields.items():
        key, tp = join(path, name), info.annotation
        if is_section(tp):
            yield from iter_options(tp, key)
            continue
        text = info.description or ""
        check = _check_of(info)
        if check is not None:
            nullable = " or null" if NoneType in get_args(tp) else ""
            text = f"{text} Must be {check.text}{nullable}."
        yield key, type_str(tp), info.get_default(call_default_factory=True), text
