"""The tool definition: a name, a description and JSON Schemas. Tools are data and are never executed."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from jsonschema.validators import validator_for

from loraforge.errors import ConfigError

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")  # used with fullmatch: no trailing newline


@dataclass
class ToolExample:
    """A worked example for a tool: a user request and the call it should produce."""

    request: str = field(metadata={"help": "What a user typed, e.g. 'Is it raining in Oslo?'"})
    arguments: dict[str, Any] = field(metadata={"help": "The call's arguments, e.g. {'city': 'Oslo'}"})
    response: Any = field(default=None, metadata={"help": "An example tool result; used to simulate the tool."})


@dataclass
class ToolDefinition:
    """One callable tool, as the adapter should learn to call it.

    `parameters` is the JSON Schema of the arguments object; `returns` optionally describes the result.
    """

    name: str = field(metadata={"help": "Function name, e.g. 'get_weather'. Letters, digits, '_', '.', '-'."})
    description: str = field(metadata={"help": "What the tool does, shown to the model."})
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}},
        metadata={"help": "JSON Schema of the arguments, an object schema."},
    )
    returns: dict[str, Any] | None = field(
        default=None, metadata={"help": "JSON Schema of the result; used to simulate tool responses."}
    )
    examples: list[ToolExample] = field(
        default_factory=list, metadata={"help": "Worked examples; they seed the synthetic data."}
    )

    def __post_init__(self) -> None:
        self.examples = [ex if isinstance(ex, ToolExample) else _example_from_dict(ex) for ex in self.examples]
        problems = validate_tool(self)
        if problems:
            raise ConfigError(f"Tool {self.name!r}: {problems[0]}")

    @property
    def properties(self) -> dict[str, Any]:
        return self.parameters.get("properties", {}) or {}

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required", []) or [])

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI tools form, as chat requests and chat JSONL carry it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": copy.deepcopy(self.parameters),
            },
        }

    def validate_arguments(self, arguments: Any) -> str | None:
        """Return None when `arguments` satisfies the parameters schema, else the first problem."""
        validator = validator_for(self.parameters)(self.parameters, format_checker=jsonschema.FormatChecker())
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"{where}: {_short(error.message)}"


def _example_from_dict(raw: Any) -> ToolExample:
    if not isinstance(raw, dict):
        raise ConfigError(f"An example must be a mapping with 'request' and 'arguments', got {raw!r}.")
    request = raw.get("request", raw.get("input"))
    arguments = raw.get("arguments", raw.get("args"))
    if not isinstance(request, str) or not isinstance(arguments, dict):
        raise ConfigError(f"An example needs 'request' (a string) and 'arguments' (a mapping); got keys {sorted(raw)}.")
    return ToolExample(request=request, arguments=arguments, response=raw.get("response", raw.get("output")))


MAX_DEPTH = 24  # JSON levels inside one schema: an object in an array in an object ... is 2 levels each
MAX_NODES = 20_000
MAX_ITEMS = 20  # the most list items a request can state


def _shape_problem(schema: Any, where: str) -> str | None:
    """What makes a schema impossible to write requests for, found without recursion: too deep, too large,
    a `$ref` (not resolved here), or an array that needs more items than a request can state."""
    stack, seen = [(schema, 0)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH:
            return f"{where} is nested more than {MAX_DEPTH} levels deep; flatten it."
        if seen > MAX_NODES:
            return f"{where} has more than {MAX_NODES} parts; a tool schema this large cannot be learned."
        if isinstance(node, dict):
            if "$ref" in node:
                return f"{where} uses $ref ({str(node['$ref'])[:40]!r}); inline the referenced schema."
            low = node.get("minItems")
            if isinstance(low, int) and not isinstance(low, bool) and low > MAX_ITEMS:
                return f"{where} asks for minItems {low}; a request can state at most {MAX_ITEMS} items."
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return None


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _schema_problem(schema: Any, where: str) -> str | None:
    if not isinstance(schema, dict):
        return f"{where} must be a JSON Schema object, got {type(schema).__name__}."
    shape = _shape_problem(schema, where)
    if shape:
        return shape
    try:
        validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        path = ".".join(str(p) for p in exc.absolute_path)
        return f"{where}{'.' + path if path else ''}: {_short(exc.message)}"
    return None


def validate_tool(tool: ToolDefinition) -> list[str]:
    """Every problem with one tool, each naming the place inside it."""
    problems: list[str] = []
    if not isinstance(tool.name, str) or not NAME_PATTERN.fullmatch(tool.name):
        problems.append(
            f"name {tool.name!r} is not a valid function name (letters, digits, '_', '.', '-'; "
            "starting with a letter or '_'; at most 64 characters)."
        )
    if not isinstance(tool.description, str) or not tool.description.strip():
        problems.append("description is missing; write one sentence saying what the tool does.")
    problem = _schema_problem(tool.parameters, "parameters")
    if problem:
        problems.append(problem)
    elif tool.parameters.get("type", "object") != "object":
        problems.append(f"parameters.type must be 'object', got {tool.parameters.get('type')!r}.")
    else:
        props = tool.parameters.get("properties", {}) or {}
        for name in tool.parameters.get("required", []) or []:
            if name not in props:
                problems.append(f"parameters.required lists {name!r}, which is not in parameters.properties.")
    if tool.returns is not None:
        problem = _schema_problem(tool.returns, "returns")
        if problem:
            problems.append(problem)
    if not problems:
        for index, example in enumerate(tool.examples):
            problem = tool.validate_arguments(example.arguments)
            if problem:
                problems.append(f"examples[{index}].arguments: {problem}")
    return problems


class ToolSet:
    """An ordered set of tools with unique names; what the Python API's `add_tool` fills."""

    def __init__(self, tools: list[ToolDefinition] | None = None) -> None:
        self._tools: dict[str, ToolDefinition] = {}
        for tool in tools or []:
            self.add_tool(tool)

    def add_tool(self, tool: ToolDefinition | None = None, **fields: Any) -> ToolDefinition:
        """Add a ToolDefinition, or build one from keyword fields (name, description, parameters, ...)."""
        if tool is None:
            tool = ToolDefinition(**fields)
        elif fields:
            raise TypeError("pass either a ToolDefinition or keyword fields, not both")
        if tool.name in self._tools:
            raise ConfigError(f"A tool named {tool.name!r} is already defined.", fix="Tool names must be unique.")
        self._tools[tool.name] = tool
        return tool

    def __iter__(self):
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __getitem__(self, name: str) -> ToolDefinition:
        return self._tools[name]

    def list(self) -> list[ToolDefinition]:
        return list(self._tools.values())
