"""Exact match of tool calls with the function-calling leaderboard's (BFCL's AST checker) semantics.

Rules: the call count must match, parallel calls match in any order, names match exactly, required
parameters are present and no parameter is unknown, types follow the schema (an integer is a valid
number), strings compare after normalisation, lists element by element, objects key by key. An optional
parameter may be left out when the expected call omits it, names its default, or lists "" among its
acceptable values. Leniency is limited to string normalisation, documented below; anything else is an error.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from loraforge.constants import ErrorCode
from loraforge.evaluators.parsing import ParsedAnswer

# Lower-case, and drop spaces and ,./-_*^ (the leaderboard's normalisation).
_STRIP = re.compile(r"[\s,./\-_*^]")
_OMIT = ""  # in an acceptable-values list, "" means "leaving the parameter out is fine"


def normalise_string(value: str) -> str:
    return _STRIP.sub("", value.lower())


@dataclass(frozen=True)
class CallCheck:
    """The verdict for one example: valid, else one error code and a message naming what differs."""

    valid: bool
    error: ErrorCode | None = None
    message: str = ""
    tool: str | None = None
    param: str | None = None

    @classmethod
    def ok(cls) -> CallCheck:
        return cls(True)


def _fail(error: ErrorCode, message: str, tool: str | None = None, param: str | None = None) -> CallCheck:
    return CallCheck(False, error, message, tool, param)


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _type_ok(value: Any, schema_type: Any) -> bool:
    if schema_type is None:
        return True
    kinds = schema_type if isinstance(schema_type, list) else [schema_type]
    for kind in kinds:
        if kind == "null" and value is None:
            return True
        allowed = _TYPES.get(kind)
        if allowed is None:
            return True
        if isinstance(value, bool) and kind in ("integer", "number"):
            continue  # True is not a number here, though Python says it is an int
        if isinstance(value, allowed):
            return True
    return False


def values_equal(got: Any, want: Any) -> bool:
    """Compare after normalisation: strings loosely, numbers by value, lists in order, objects per key."""
    if isinstance(want, str) and isinstance(got, str):
        return normalise_string(got) == normalise_string(want)
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return float(got) == float(want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(values_equal(g, w) for g, w in zip(got, want))
    if isinstance(want, dict) and isinstance(got, dict):
        return set(got) == set(want) and all(values_equal(got[k], want[k]) for k in want)
    return got == want


def check_call(got: dict[str, Any], want: dict[str, Any], schema: dict[str, Any] | None = None) -> CallCheck:
    """One predicted call against one expected call, stopping at the first difference.

    `want` is {"name", "arguments", optional "acceptable": {param: [values...]}}.
    `schema` is the tool's parameters schema, used for types, required parameters and defaults.
    """
    name = want["name"]
    if got.get("name") != name:
        return _fail(ErrorCode.WRONG_FUNC_NAME, f"expected {name!r}, got {got.get('name')!r}", name)
    schema = schema or {}
    props: dict[str, Any] = schema.get("properties", {}) or {}
    required = list(schema.get("required", []) or [])
    args: dict[str, Any] = got.get("arguments") or {}
    expected: dict[str, Any] = want.get("arguments") or {}
    acceptable: dict[str, list[Any]] = {k: list(v) for k, v in (want.get("acceptable") or {}).items()}
    for param in required:
        if param not in args:
            return _fail(ErrorCode.MISSING_REQUIRED, f"required parameter {param!r} is missing", name, param)
    known = set(props) | set(expected)
    for param in args:
        if param not in known:
            return _fail(ErrorCode.UNEXPECTED_PARAM, f"parameter {param!r} is not in the schema", name, param)
    for param, value in args.items():
        want_type = props.get(param, {}).get("type")
        if want_type is None and param in expected:
            want_type = _json_type(expected[param])
        if not _type_ok(value, want_type):
            return _fail(
                ErrorCode.TYPE_ERROR,
                f"parameter {param!r}: expected type {want_type}, got {type(value).__name__} {value!r}",
                name,
                param,
            )
    for param, value in args.items():
        choices = acceptable.get(param) or ([expected[param]] if param in expected else [])
        if not choices:
            default = props.get(param, {}).get("default", _MISSING)
            if default is not _MISSING and values_equal(value, default):
                continue
            return _fail(ErrorCode.UNEXPECTED_PARAM, f"parameter {param!r} was not asked for", name, param)
        if not any(values_equal(value, choice) for choice in choices if choice != _OMIT or value == _OMIT):
            return _fail(
                ErrorCode.VALUE_ERROR,
                f"parameter {param!r}: expected {choices[0]!r}, got {value!r}",
                name,
                param,
            )
    for param, value in expected.items():
        if param in args:
            continue
        default = props.get(param, {}).get("default", _MISSING)
        omittable = _OMIT in acceptable.get(param, []) or (default is not _MISSING and values_equal(default, value))
        if not omittable:
            error = ErrorCode.MISSING_REQUIRED if param in required else ErrorCode.VALUE_ERROR
            return _fail(error, f"parameter {param!r} is missing (expected {value!r})", name, param)
    return CallCheck.ok()


class _Missing:
    pass


_MISSING = _Missing()


def _json_type(value: Any) -> str | None:
    for kind, types in (("boolean", (bool,)), ("integer", (int,)), ("number", (float,)), ("string", (str,))):
        if isinstance(value, types):
            return kind
    return None


def check_example(
    answer: ParsedAnswer,
    expected: list[dict[str, Any]],
    schemas: dict[str, dict[str, Any]] | None = None,
) -> CallCheck:
    """All calls of one answer against the expected calls; an empty `expected` means "answer in text"."""
    schemas = schemas or {}
    if answer.malformed:
        return _fail(ErrorCode.MALFORMED_JSON, f"could not read the tool call: {answer.raw[:120]!r}")
    got = answer.calls
    if not expected:
        if got:
            return _fail(
                ErrorCode.SPURIOUS_CALL, f"called {got[0]['name']!r} where a text answer was expected", got[0]["name"]
            )
        return CallCheck.ok()
    if not got:
        return _fail(ErrorCode.NO_CALL, "answered in text instead of calling a tool", expected[0]["name"])
    if len(got) != len(expected):
        return _fail(ErrorCode.WRONG_COUNT, f"expected {len(expected)} call(s), got {len(got)}", expected[0]["name"])
    if len(expected) == 1:
        return check_call(got[0], expected[0], schemas.get(expected[0]["name"]))
    # Parallel calls match in any order: take the ordering with the most matching calls.
    best: CallCheck | None = None
    best_score = -1
    orders = itertools.permutations(range(len(got))) if len(got) <= 6 else [tuple(range(len(got)))]
    for order in orders:
        checks = [check_call(got[i], want, schemas.get(want["name"])) for i, want in zip(order, expected)]
        score = sum(c.valid for c in checks)
        if score == len(checks):
            return CallCheck.ok()
        if score > best_score:
            best_score, best = score, next(c for c in checks if not c.valid)
    assert best is not None
    return best
