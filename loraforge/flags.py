"""Command-line flags built from config dataclass fields, so that a flag's type, choices, default and help
are the field's own (the same ones `loraforge init` writes), and flags given come back in the config's
nested shape."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

_SEP = "__"  # a nested field's dest: training.epochs -> training__epochs


def config_field(cls: type, path: str) -> tuple[dataclasses.Field, Any]:
    """The dataclass field at a dotted `path` of `cls` ("training.epochs") and its resolved type."""
    *parents, name = path.split(".")
    for parent in parents:
        cls = typing.get_type_hints(cls)[parent]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return fields[name], typing.get_type_hints(cls)[name]


def field_default(cls: type, path: str) -> Any:
    """The default of the field at a dotted `path` of `cls`: for a command that takes no config file."""
    return _default(config_field(cls, path)[0])


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _base_type(hint: Any) -> tuple[Any, tuple[Any, ...] | None]:
    """(the type a flag parses, its choices): `int | None` -> int; Literal["a", "b"] -> str, ("a", "b")."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return type(typing.get_args(hint)[0]), typing.get_args(hint)
    if args and typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _base_type(args[0])
    if typing.get_origin(hint) is list:
        return (args[0] if args else str), None
    return hint, None


def add_config_flag(parser: Any, cls: type, path: str, flag: str | None = None, **overrides: Any) -> None:
    """Add `flag` (default: --the-field-name) for the field at `path`. The flag's default is None, so that
    only flags given override the config file; the help shows the field's own default."""
    field, hint = config_field(cls, path)
    kind, choices = _base_type(hint)
    default = _default(field)
    flag = flag or "--" + path.split(".")[-1].replace("_", "-")
    help_text = field.metadata.get("help", "").rstrip(".")
    if default not in (None, [], "") and kind is not bool:
        help_text += f" (default: {default})"
    options: dict[str, Any] = {"dest": path.replace(".", _SEP), "default": None, "help": help_text}
    if kind is bool:
        # A flag flips the default: --no-judge for a field that is on unless turned off.
        options |= {"action": "store_const", "const": not default}
        state = "on" if default else "off"
        options["help"] = (
            f"turn {'off' if default else 'on'}: {help_text[:1].lower()}{help_text[1:]} ({state} by default)"
        )
    elif typing.get_origin(hint) is list:
        options |= {"action": "append", "type": kind}
    else:
        options |= {"type": kind}
        if choices:
            options["choices"] = choices
    name = path.split(".")[-1]
    if kind is Path:
        options["metavar"] = "DIR" if name == "out" or name.endswith("_dir") else "FILE"
    elif kind is not bool and not choices:
        options["metavar"] = {int: "N", float: "X"}.get(kind, name.upper())
    options |= overrides
    parser.add_argument(flag, **options)


def given(args: argparse.Namespace, paths: list[str]) -> dict[str, Any]:
    """The config fields among `paths` that were given as flags, in the config's nested shape (paths as
    text, as a YAML config holds them)."""
    values: dict[str, Any] = {}
    for path in paths:
        value = getattr(args, path.replace(".", _SEP), None)
        if value is None:
            continue
        *parents, name = path.split(".")
        target = values
        for parent in parents:
            target = target.setdefault(parent, {})
        target[name] = str(value) if isinstance(value, Path) else value
    return values
