"""`key=value` overrides for dataclass configs, checked against the fields' types (docs/design.md)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def _coerce(value: Any, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        errors = []
        for opt in options:
            try:
                return _coerce(value, opt, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0])
    if origin is tuple:
        args = typing.get_args(kind)
        inner = args[0] if args else str
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, inner, key) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "true",
            "1",
            "yes",
            "on",
            "false",
            "0",
            "no",
            "off",
        ):
            return value.lower() in ("true", "1", "yes", "on")
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value) if not isinstance(value, str) else int(value.strip())
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{key}: expected an integer, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected a number, got {value!r}") from None
    if dataclasses.is_dataclass(kind) and not isinstance(value, kind):
        raise ValueError(f"{key}: expected a table of {kind.__name__} settings, got {value!r}")
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """['lr=0.1', 'epochs=3'] -> {'lr': '0.1', 'epochs': '3'}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def apply_overrides(cfg: T, overrides: Mapping[str, Any] | Iterable[str] | None) -> T:
    """A copy of dataclass `cfg` with overrides applied; unknown keys and bad types are errors."""
    if overrides is None:
        return cfg
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    hints = typing.get_type_hints(type(cfg))
    names = [f.name for f in dataclasses.fields(cfg)]
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(
                f"unknown setting {key!r} for {type(cfg).__module__}.{type(cfg).__name__}; "
                f"valid keys: {', '.join(names)}"
            )
        changes[key] = _coerce(value, hints[key], key)
    return dataclasses.replace(cfg, **changes)
