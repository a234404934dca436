"""Typed, validated settings: the machinery behind the one training configuration.

Each component keeps its section (a frozen dataclass deriving from :class:`Section`) beside
its code: the model's in ``model/config.py``, the features' in ``features/config.py``, the
training loop's, pseudo-labelling's and selection's in ``training/``. The sections nest into
one :class:`mmalign.training.config.TrainConfig`, the only place where defaults live.

A section checks itself whenever it is made, from code, from a config file, from ``--set``
or from a run's ``config.json``: strings become their :class:`Choice` (an unknown one names
the valid values), numbers and flags must be what the field says, and each section's
``check`` tests its ranges. Every problem is an :class:`MMAlignError`, raised before anything
is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from enum import Enum
from typing import Any, Mapping, TypeVar, Union

from mmalign.errors import MMAlignError

S = TypeVar("S", bound="Section")
C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """A setting with a closed set of values; Typer lists them in ``--help``."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def label(cls, key: str) -> str:
        """How an error names the setting (override for a clearer word than its key)."""
        return key.replace("_", " ")

    @classmethod
    def parse(cls: type[C], value: Any, key: str) -> C:
        """The member whose value is ``value``; anything else is a user error naming the choices."""
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(member.value for member in cls)
            raise MMAlignError(f"unknown {cls.label(key)} {value!r} (choose {choices})") from None


@dataclasses.dataclass(frozen=True)
class Section:
    """A frozen dataclass whose fields are coerced to their annotated types, then checked."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = _coerce(getattr(self, field.name), hints[field.name], field.name)
            object.__setattr__(self, field.name, value)
        self.check()

    def check(self) -> None:
        """Range checks of a section (override); raise MMAlignError."""

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any], where: str = "") -> S:
        """A section from nested plain data; unknown keys are errors (close names suggested)."""
        if not isinstance(data, Mapping):
            raise MMAlignError(f"{where or 'config'}: expected a mapping of settings, got {data!r}")
        hints = typing.get_type_hints(cls)
        names = [field.name for field in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise MMAlignError(f"unknown setting {where}{key!r}{_suggest(str(key), names)}")
        values = {}
        for name in names:
            if name in data:
                sub = _section_type(hints[name])
                values[name] = sub.from_dict(data[name], f"{where}{name}.") if sub is not None else data[name]
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain data (Choices as their values): what ``config.json`` holds."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Section):
                value = value.to_dict()
            elif isinstance(value, Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out


def leaf_paths(cls: type[Section], prefix: str = "") -> dict[str, str]:
    """Every setting's dotted path (``model.dim``) by its own name (``dim``).

    Leaf names are unique across sections, so ``--set dim=64`` and a flat dict of names
    (older run folders, tests) address settings as well as ``--set model.dim=64`` does.
    """
    paths: dict[str, str] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        sub = _section_type(hints[field.name])
        inner = leaf_paths(sub, f"{prefix}{field.name}.") if sub is not None else {field.name: f"{prefix}{field.name}"}
        for name, path in inner.items():
            if name in paths:
                raise TypeError(f"setting name {name!r} is used twice ({paths[name]}, {path})")
            paths[name] = path
    return paths


def nest(flat: Mapping[str, Any], paths: Mapping[str, str], where: str = "") -> dict[str, Any]:
    """Nested data from ``{name or dotted path: value}``; unknown names are errors."""
    nested: dict[str, Any] = {}
    known = set(paths.values())
    for key, value in flat.items():
        path = paths.get(key, key)
        if path not in known:
            raise MMAlignError(f"unknown setting {key!r}{where}{_suggest(key, [*paths, *known])}")
        *sections, leaf = path.split(".")
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
        target[leaf] = value
    return nested


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s values on top, section by section."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def _suggest(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _section_type(hint: Any) -> type[Section] | None:
    return hint if isinstance(hint, type) and issubclass(hint, Section) else None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as the annotated type, or an MMAlignError saying what was expected."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None or value == "null":
            return None
        return _coerce(value, options[0], key)
    if origin in (tuple, list):
        if isinstance(value, str):  # --set modalities=relation,attribute
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, (list, tuple)):
            raise MMAlignError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(v, item, key) for v in value)
    if isinstance(hint, type) and issubclass(hint, Choice):
        return hint.parse(value, key)
    if isinstance(hint, type) and issubclass(hint, Section):
        if not isinstance(value, hint):
            raise MMAlignError(f"{key} must be a {hint.__name__}, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise MMAlignError(f"{key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
            raise MMAlignError(f"{key} must be a whole number, got {value!r}")
        return int(value)
    if hint is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise MMAlignError(f"{key} must be a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise MMAlignError(f"{key} must be text, got {value!r}")
        return value
    return value


def at_least(key: str, value: float, least: float) -> None:
    """The range check sections share, worded as the flag a user would type."""
    if value < least:
        raise MMAlignError(f"--{key.replace('_', '-')} must be at least {least}, got {value}")
