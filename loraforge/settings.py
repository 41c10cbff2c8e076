"""Typed settings from plain mappings (YAML files, flags, the Python API): a dataclass built from a dict,
refusing unknown keys and wrongly typed values with the key's dotted path and the field's help."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

from loraforge.errors import ConfigError


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Path:
        return isinstance(value, (str, Path))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and (item is Any or all(_type_ok(v, item) for v in value))
    if origin is dict:
        key, item = typing.get_args(hint) or (Any, Any)
        return isinstance(value, dict) and all(
            (key is Any or _type_ok(k, key)) and (item is Any or _type_ok(v, item)) for k, v in value.items()
        )
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def build(cls: type, data: dict[str, Any], where: str) -> Any:
    """A dataclass from a mapping, refusing unknown keys and wrongly typed values with the key's path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"Unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(f'{where}.{k}' for k in unknown)}.",
            fix=f"Known settings in {where}: {', '.join(known)}. `loraforge init` writes them all with their defaults.",
        )
    values = {}
    for key, value in data.items():
        if dataclasses.is_dataclass(hints[key]) and not isinstance(value, hints[key]):
            values[key] = build(hints[key], value or {}, f"{where}.{key}")  # a nested section of settings
            continue
        if not _type_ok(value, hints[key]):
            if typing.get_origin(hints[key]) is typing.Literal:
                allowed = ", ".join(repr(a) for a in typing.get_args(hints[key]))
                raise ConfigError(f"{where}.{key} must be one of {allowed}, got {value!r}.")
            raise ConfigError(
                f"{where}.{key} must be of type {getattr(hints[key], '__name__', hints[key])}, got {value!r}.",
                fix=f"{known[key].metadata.get('help', '')}",
            )
        values[key] = value
    return cls(**values)
