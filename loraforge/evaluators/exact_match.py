"""Exact match of tool calls with the function-calling leaderboard's (BFCL's AST checker) rules.

Rules (`../shared/reference/evaluation-rules.md`): the call count must match, parallel calls match in any
order, names match exactly, required parameters are present and no parameter outside the schema appears,
types follow the schema, array items included (an integer is a valid number), strings compare after the
leaderboard's normalisation, lists element by element, objects key by key. The expected call may list
acceptable values per parameter (`acceptable`, added to the expected value; a dotted key such as
"recipient.zip" reaches inside an object); "" among them means that leaving the parameter out is fine.
An optional parameter that the expected call does not name must be left out.

Departures from these rules exist only as named options in `Leniency`, all off by default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from loraforge.chat.parsing import ParsedAnswer
from loraforge.constants import ErrorCode

# Lower-case, drop spaces and ,./-_*^, and read ' as " (the leaderboard's normalisation; tabs and newlines stay).
_STRIP = re.compile(r"[ ,./\-_*^]")
_OMIT = ""  # in an acceptable-values list, "" means "leaving the parameter out is fine"


@dataclass(frozen=True)
class Leniency:
    """Departures from the leaderboard's rules. Each is off by default, so scores mean what the field means."""

    defaults: bool = field(
        default=False,
        metadata={
            "help": "A parameter left out counts as its schema default: an unrequested parameter equal to its "
            "default is accepted, and an expected value equal to the default may be left out."
        },
    )
    params_outside_schema: bool = field(
        default=False,
        metadata={"help": "Accept a parameter that the expected call names although the tool's schema lacks it."},
    )
    best_pairing: bool = field(
        default=False,
        metadata={
            "help": "Pair parallel calls so that as many as possible match. The leaderboard pairs each expected "
            "call, in order, with the first unused predicted call that fits, so a predicted call that fits two "
            "expected ones can leave the second unpaired."
        },
    )
    integers_in_number_arrays: bool = field(
        default=False,
        metadata={
            "help": "Accept an integer item in an array of numbers. The leaderboard accepts an integer for a "
            "number parameter, but not for an item inside an array."
        },
    )


STRICT = Leniency()


def normalise_string(value: str) -> str:
    return _STRIP.sub("", value.lower()).replace("'", '"')


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


def _type_problem(value: Any, schema: Any, path: str, item_ints: bool = False) -> str | None:
    """The first value whose type its schema refuses: the parameter itself, or an item of an array. An
    integer item of an array of numbers is refused unless `item_ints`, as on the leaderboard."""
    if not isinstance(schema, dict):
        return None
    if not _type_ok(value, schema.get("type")):
        return f"{path}: expected type {schema.get('type')}, got {type(value).__name__} {value!r}"
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        for index, item in enumerate(value):
            where = f"{path}[{index}]"
            if not item_ints and items.get("type") == "number" and type(item) is int:
                return f"{where}: expected type number, got int {item!r} (write {float(item)!r})"
            if problem := _type_problem(item, items, where, item_ints):
                return problem
    # Values inside an object are compared by value, not typed (1.0 equals a nested 1), as on the leaderboard.
    return None


def _choices(key: str, expected: dict[str, Any], acceptable: dict[str, list[Any]]) -> list[Any]:
    """Acceptable values for one key: the listed ones plus the expected value."""
    return list(acceptable.get(key, [])) + ([expected[key]] if key in expected else [])


def values_equal(got: Any, want: Any, acceptable: dict[str, list[Any]] | None = None, path: str = "") -> bool:
    """Compare after normalisation: strings loosely, numbers by value, lists in order, objects per key.

    Inside objects, `acceptable` may list values per dotted path ("recipient.zip"), "" among them meaning
    that the key may be left out; a key that neither side names is an error."""
    acceptable = acceptable or {}
    if isinstance(want, str) and isinstance(got, str):
        return normalise_string(got) == normalise_string(want)
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return float(got) == float(want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(values_equal(g, w) for g, w in zip(got, want))
    if isinstance(want, dict) and isinstance(got, dict):
        for key in set(got) | set(want):
            where = f"{path}.{key}" if path else key
            choices = _choices(key, want, {key: acceptable.get(where, [])})
            if key not in got:
                if _OMIT not in choices:
                    return False
            elif not any(values_equal(got[key], c, acceptable, where) for c in choices if c != _OMIT):
                return False
        return True
    return got == want


def check_call(
    got: dict[str, Any], want: dict[str, Any], schema: dict[str, Any] | None = None, leniency: Leniency = STRICT
) -> CallCheck:
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
    known = set(props) if props else set(expected)
    if leniency.params_outside_schema:
        known |= set(expected)
    for param in args:
        if param not in known:
            return _fail(ErrorCode.UNEXPECTED_PARAM, f"parameter {param!r} is not in the schema", name, param)
    for param, value in args.items():
        param_schema = props.get(param) or ({"type": _json_type(expected[param])} if param in expected else None)
        if problem := _type_problem(value, param_schema, param, leniency.integers_in_number_arrays):
            return _fail(ErrorCode.TYPE_ERROR, f"parameter {problem}", name, param)

    def default_matches(param: str, value: Any) -> bool:
        default = props.get(param, {}).get("default", _MISSING)
        return leniency.defaults and default is not _MISSING and values_equal(value, default)

    for param, value in args.items():
        choices = _choices(param, expected, acceptable)
        if not choices:
            if default_matches(param, value):
                continue
            return _fail(ErrorCode.UNEXPECTED_PARAM, f"parameter {param!r} was not asked for", name, param)
        if not any(values_equal(value, c, acceptable, param) for c in choices if c != _OMIT):
            shown = next((c for c in choices if c != _OMIT), "")
            return _fail(ErrorCode.VALUE_ERROR, f"parameter {param!r}: expected {shown!r}, got {value!r}", name, param)
    for param in [*expected, *(k for k in acceptable if "." not in k and k not in expected)]:
        if param in args:
            continue
        choices = _choices(param, expected, acceptable)
        if _OMIT in choices or (param in expected and default_matches(param, expected[param])):
            continue
        error = ErrorCode.MISSING_REQUIRED if param in required else ErrorCode.VALUE_ERROR
        shown = expected.get(param, next((c for c in choices if c != _OMIT), ""))
        return _fail(error, f"parameter {param!r} is missing (expected {shown!r})", name, param)
    return CallCheck.ok()


class _Missing:
    pass


_MISSING = _Missing()


def _json_type(value: Any) -> str | None:
    for kind, types in (("boolean", (bool,)), ("integer", (int,)), ("number", (float,)), ("string", (str,))):
        if isinstance(value, types):
            return kind
    return None


def _first_fit(ok: list[list[bool]]) -> dict[int, int]:
    """The leaderboard's pairing: each expected call (row), in order, takes the first unused predicted call
    (column) that fits."""
    pairs: dict[int, int] = {}
    for row, fits in enumerate(ok):
        col = next((j for j, fit in enumerate(fits) if fit and j not in pairs.values()), None)
        if col is not None:
            pairs[row] = col
    return pairs


def _max_matching(ok: list[list[bool]]) -> dict[int, int]:
    """Largest pairing of expected calls (rows) with predicted calls (columns) where `ok` holds (Kuhn)."""
    owner: dict[int, int] = {}  # predicted index -> expected index

    def place(row: int, seen: set[int]) -> bool:
        for col, fits in enumerate(ok[row]):
            if fits and col not in seen:
                seen.add(col)
                if col not in owner or place(owner[col], seen):
                    owner[col] = row
                    return True
        return False

    for row in range(len(ok)):
        place(row, set())
    return {row: col for col, row in owner.items()}


def check_example(
    answer: ParsedAnswer,
    expected: list[dict[str, Any]],
    schemas: dict[str, dict[str, Any]] | None = None,
    leniency: Leniency = STRICT,
) -> CallCheck:
    """All calls of one answer against the expected calls; an empty `expected` means "answer in text"."""
    schemas = schemas or {}
    if answer.malformed:
        if not expected:
            return CallCheck.ok()  # the leaderboard counts an unreadable answer as no call
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
    # Parallel calls match in any order.
    verdicts = [[check_call(g, want, schemas.get(want["name"]), leniency) for g in got] for want in expected]
    pair = _max_matching if leniency.best_pairing else _first_fit
    pairs = pair([[v.valid for v in row] for row in verdicts])
    if len(pairs) == len(expected):
        return CallCheck.ok()
    row = next(i for i in range(len(expected)) if i not in pairs)
    col = next(j for j in range(len(got)) if j not in pairs.values())
    return verdicts[row][col]
