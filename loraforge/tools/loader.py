"""Load tool definitions from YAML or JSON files, with errors that name the file, line and tool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from loraforge.errors import ConfigError
from loraforge.files import read_user_text
from loraforge.tools.definition import ToolDefinition
from loraforge.yaml_safe import NoAliasLoader

FIX = (
    "A tools file holds a list of tools (or a mapping with a 'tools' list); each tool has 'name', "
    "'description', 'parameters' (a JSON Schema object) and optional 'returns' and 'examples'. "
    "The OpenAI form {type: function, function: {...}} is accepted too."
)


def _item_lines(text: str) -> list[int]:
    """1-based line of each tool entry, from the YAML node tree (JSON is valid YAML here)."""
    try:
        node = yaml.compose(text, Loader=NoAliasLoader)
    except (yaml.YAMLError, RecursionError):
        return []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == "tools":
                node = value
                break
    if isinstance(node, yaml.SequenceNode):
        return [item.start_mark.line + 1 for item in node.value]
    return []


def _parse(path: Path, text: str) -> Any:
    try:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a tools file.", fix=FIX) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        if path.suffix == ".json":
            try:
                return json.loads(text)
            except json.JSONDecodeError as jexc:
                raise ConfigError(f"{path}, line {jexc.lineno}: not valid JSON ({jexc.msg}).") from None
            except RecursionError:
                raise ConfigError(f"{path}: nested too deeply to be a tools file.", fix=FIX) from None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: not valid YAML ({problem}).", fix=FIX) from None


def tool_from_mapping(raw: Any) -> ToolDefinition:
    """Build a tool from a plain mapping, in loraforge's form or OpenAI's."""
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping, got {type(raw).__name__}.")
    if raw.get("type") == "function" and isinstance(raw.get("function"), dict):
        raw = raw["function"]
    known = {"name", "description", "parameters", "returns", "examples"}
    unknown = sorted(set(raw) - known - {"strict"})
    if unknown:
        raise ConfigError(f"unknown keys {unknown}; allowed are {sorted(known)}.")
    if "name" not in raw:
        raise ConfigError("'name' is missing.")
    examples = raw.get("examples") or []
    if not isinstance(examples, list):
        raise ConfigError("'examples' must be a list.")
    return ToolDefinition(
        name=raw["name"],
        description=raw.get("description", ""),
        parameters=raw.get("parameters") or {"type": "object", "properties": {}},
        returns=raw.get("returns"),
        examples=examples,
    )


def load_tools(path: str | Path) -> list[ToolDefinition]:
    """Read and validate a tools file. Raises ConfigError naming the file, line and tool on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Tools file {path} does not exist.", fix="Pass an existing file with --tools.")
    text = read_user_text(path, FIX)
    data = _parse(path, text)
    if isinstance(data, dict) and "tools" in data:
        data = data["tools"]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{path}: no tools found.", fix=FIX)
    lines = _item_lines(text)
    tools: list[ToolDefinition] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(data):
        line = f", line {lines[index]}" if index < len(lines) else ""
        label = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(raw, dict) and isinstance(raw.get("function"), dict):
            label = raw["function"].get("name")
        where = f"{path}{line}: tool #{index + 1}" + (f" {label!r}" if label else "")
        try:
            tool = tool_from_mapping(raw)
        except ConfigError as exc:
            message = str(exc).removeprefix(f"Tool {label!r}: ")
            raise ConfigError(f"{where}: {message}", fix=exc.fix or FIX) from None
        if tool.name in seen:
            raise ConfigError(
                f"{where}: the name {tool.name!r} is already used by tool #{seen[tool.name] + 1}.",
                fix="Tool names must be unique.",
            )
        seen[tool.name] = index
        tools.append(tool)
    return tools
