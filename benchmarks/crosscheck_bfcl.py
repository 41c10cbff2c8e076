"""Does loraforge's exact match say what the leaderboard says? Our own cases through both checkers.

    .venv/bin/pip install --no-deps bfcl-eval      # the leaderboard's own checker, without its model clients
    .venv/bin/python benchmarks/crosscheck_bfcl.py

Each case is a tool schema, the acceptable values per parameter (the leaderboard's "possible answer"
form: a list per parameter, "" meaning it may be left out) and a model's calls. The script turns each case
into loraforge's form (expected call plus `acceptable`, dotted keys inside objects), scores it with
`loraforge.evaluators.exact_match.check_example` and with `bfcl_eval`'s `ast_checker`, and writes both
verdicts to benchmarks/results/crosscheck_bfcl.json. It exits 1 if any case disagrees.

The cases are written for this script; none comes from the leaderboard's question sets, which are kept
for independent evaluation. Two of the leaderboard's rules that a reader may not expect are among the
cases: parallel calls pair in order, each expected call with the first unused predicted call that fits
(loraforge's `Leniency.best_pairing` finds a full pairing instead), and an integer item in an array of
numbers is refused (`Leniency.integers_in_number_arrays` accepts it); both options are off by default.

bfcl-eval's model-config module imports every API client it supports; the checker uses it only to
rename dotted function names for some providers, so a stub stands in for that one module.
"""

from __future__ import annotations

import json
import sys
import types
from importlib import metadata
from pathlib import Path

from provenance import provenance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loraforge.chat.parsing import ParsedAnswer  # noqa: E402
from loraforge.evaluators.exact_match import check_example  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "crosscheck_bfcl.json"
MODEL = "loraforge-crosscheck"

TOOLS = {
    "get_weather": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            "days": {"type": "integer"},
            "threshold": {"type": "number"},
            "alerts": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "readings": {"type": "array", "items": {"type": "number"}},
        },
        "required": ["city"],
    },
    "ship": {
        "type": "object",
        "properties": {
            "to": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "zip": {"type": "string"}, "floor": {"type": "integer"}},
            },
            "sizes": {"type": "array", "items": {"type": "integer"}},
            "express": {"type": "boolean"},
        },
        "required": ["to"],
    },
    "get_time": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
}

W, S, T = "get_weather", "ship", "get_time"
ANN = {"name": ["Ann"], "zip": ["02139"]}


def case(label: str, possible: list[tuple[str, dict]], output: list[tuple[str, dict]]) -> dict:
    return {"label": label, "possible": possible, "output": output}


CASES = [
    case("exact string", [(W, {"city": ["Paris"]})], [(W, {"city": "Paris"})]),
    case("string case", [(W, {"city": ["Paris"]})], [(W, {"city": "paris"})]),
    case("trailing space", [(W, {"city": ["Paris"]})], [(W, {"city": "Paris "})]),
    case("dash", [(W, {"city": ["Paris"]})], [(W, {"city": "Par-is"})]),
    case("tab is not stripped", [(W, {"city": ["Paris"]})], [(W, {"city": "Pa\tris"})]),
    case("newline is not stripped", [(W, {"city": ["New York"]})], [(W, {"city": "New\nYork"})]),
    case("other city", [(W, {"city": ["Paris"]})], [(W, {"city": "Rome"})]),
    case("second acceptable", [(W, {"city": ["New York", "NYC"]})], [(W, {"city": "nyc"})]),
    case("dots stripped", [(W, {"city": ["New York", "NYC"]})], [(W, {"city": "N.Y.C."})]),
    case("underscore", [(W, {"city": ["New York"]})], [(W, {"city": "new_york"})]),
    case("slash", [(W, {"city": ["a/b"]})], [(W, {"city": "ab"})]),
    case("comma", [(W, {"city": ["Paris, France"]})], [(W, {"city": "Paris France"})]),
    case("quote kinds", [(W, {"city": ["O'Hare"]})], [(W, {"city": 'O"Hare'})]),
    case("enum case", [(W, {"city": ["Oslo"], "unit": ["celsius"]})], [(W, {"city": "Oslo", "unit": "Celsius"})]),
    case("missing required", [(W, {"city": ["Paris"]})], [(W, {})]),
    case("unrequested default", [(W, {"city": ["Paris"]})], [(W, {"city": "Paris", "unit": "celsius"})]),
    case("optional omitted", [(W, {"city": ["Paris"], "unit": ["celsius", ""]})], [(W, {"city": "Paris"})]),
    case(
        "optional given",
        [(W, {"city": ["Paris"], "unit": ["celsius", ""]})],
        [(W, {"city": "Paris", "unit": "celsius"})],
    ),
    case(
        "optional wrong",
        [(W, {"city": ["Paris"], "unit": ["celsius", ""]})],
        [(W, {"city": "Paris", "unit": "fahrenheit"})],
    ),
    case("expected optional left out", [(W, {"city": ["Paris"], "unit": ["fahrenheit"]})], [(W, {"city": "Paris"})]),
    case("outside the schema", [(W, {"city": ["Paris"]})], [(W, {"city": "Paris", "colour": "red"})]),
    case(
        "expected parameter outside the schema",
        [(W, {"city": ["Paris"], "colour": ["red"]})],
        [(W, {"city": "Paris", "colour": "red"})],
    ),
    case("integer", [(W, {"city": ["Oslo"], "days": [3]})], [(W, {"city": "Oslo", "days": 3})]),
    case("float for integer", [(W, {"city": ["Oslo"], "days": [3]})], [(W, {"city": "Oslo", "days": 3.0})]),
    case("string for integer", [(W, {"city": ["Oslo"], "days": [3]})], [(W, {"city": "Oslo", "days": "3"})]),
    case("bool for integer", [(W, {"city": ["Oslo"], "days": [1]})], [(W, {"city": "Oslo", "days": True})]),
    case("other integer", [(W, {"city": ["Oslo"], "days": [3]})], [(W, {"city": "Oslo", "days": 4})]),
    case("zero", [(W, {"city": ["Oslo"], "days": [0]})], [(W, {"city": "Oslo", "days": 0})]),
    case("number", [(W, {"city": ["Oslo"], "threshold": [2.5]})], [(W, {"city": "Oslo", "threshold": 2.5})]),
    case("integer for number", [(W, {"city": ["Oslo"], "threshold": [2.0]})], [(W, {"city": "Oslo", "threshold": 2})]),
    case("other number", [(W, {"city": ["Oslo"], "threshold": [2.5]})], [(W, {"city": "Oslo", "threshold": 3})]),
    case("number omitted", [(W, {"city": ["Oslo"], "threshold": [1.5, ""]})], [(W, {"city": "Oslo"})]),
    case("boolean", [(W, {"city": ["Oslo"], "alerts": [True]})], [(W, {"city": "Oslo", "alerts": True})]),
    case("string for boolean", [(W, {"city": ["Oslo"], "alerts": [True]})], [(W, {"city": "Oslo", "alerts": "true"})]),
    case("boolean omitted", [(W, {"city": ["Oslo"], "alerts": [False, ""]})], [(W, {"city": "Oslo"})]),
    case("other boolean", [(W, {"city": ["Oslo"], "alerts": [True]})], [(W, {"city": "Oslo", "alerts": False})]),
    case("string for string", [(W, {"city": ["7"]})], [(W, {"city": 7})]),
    case(
        "list",
        [(W, {"city": ["Oslo"], "tags": [["rain", "wind"]]})],
        [(W, {"city": "Oslo", "tags": ["Rain", "wind"]})],
    ),
    case(
        "list order",
        [(W, {"city": ["Oslo"], "tags": [["rain", "wind"]]})],
        [(W, {"city": "Oslo", "tags": ["wind", "rain"]})],
    ),
    case(
        "list short", [(W, {"city": ["Oslo"], "tags": [["rain", "wind"]]})], [(W, {"city": "Oslo", "tags": ["rain"]})]
    ),
    case(
        "list alternative",
        [(W, {"city": ["Oslo"], "tags": [["rain"], ["rain", "wind"]]})],
        [(W, {"city": "Oslo", "tags": ["rain", "wind"]})],
    ),
    case(
        "number list",
        [(W, {"city": ["Oslo"], "readings": [[1.5, 2.0]]})],
        [(W, {"city": "Oslo", "readings": [1.5, 2.0]})],
    ),
    case(
        "integer in number list",
        [(W, {"city": ["Oslo"], "readings": [[1.5, 2.0]]})],
        [(W, {"city": "Oslo", "readings": [1.5, 2]})],
    ),
    case("string for list", [(W, {"city": ["Oslo"], "tags": [["rain"]]})], [(W, {"city": "Oslo", "tags": "rain"})]),
    case("list item type", [(W, {"city": ["Oslo"], "tags": [["rain"]]})], [(W, {"city": "Oslo", "tags": [1]})]),
    case("wrong function", [(W, {"city": ["Paris"]})], [(T, {"zone": "CET"})]),
    case("object", [(S, {"to": [ANN]})], [(S, {"to": {"name": "Ann", "zip": "02139"}})]),
    case("object string case", [(S, {"to": [ANN]})], [(S, {"to": {"name": "ann", "zip": "02139"}})]),
    case("object key missing", [(S, {"to": [ANN]})], [(S, {"to": {"name": "Ann"}})]),
    case(
        "object key optional", [(S, {"to": [{"name": ["Ann"], "zip": ["02139", ""]}]})], [(S, {"to": {"name": "Ann"}})]
    ),
    case(
        "object key unexpected",
        [(S, {"to": [ANN]})],
        [(S, {"to": {"name": "Ann", "zip": "02139", "floor": 3}})],
    ),
    case(
        "object integer by value",
        [(S, {"to": [{"name": ["Ann"], "floor": [2]}]})],
        [(S, {"to": {"name": "Ann", "floor": 2.0}})],
    ),
    case(
        "object other value",
        [(S, {"to": [{"name": ["Ann"], "floor": [2]}]})],
        [(S, {"to": {"name": "Ann", "floor": 3}})],
    ),
    case("string for object", [(S, {"to": [ANN]})], [(S, {"to": "Ann"})]),
    case(
        "integer list",
        [(S, {"to": [ANN], "sizes": [[1, 2]]})],
        [(S, {"to": {"name": "Ann", "zip": "02139"}, "sizes": [1, 2]})],
    ),
    case(
        "float in integer list",
        [(S, {"to": [ANN], "sizes": [[1, 2]]})],
        [(S, {"to": {"name": "Ann", "zip": "02139"}, "sizes": [1, 2.5]})],
    ),
    case(
        "expected flag left out",
        [(S, {"to": [ANN], "express": [True]})],
        [(S, {"to": {"name": "Ann", "zip": "02139"}})],
    ),
    case("list omitted", [(S, {"to": [ANN], "sizes": [""]})], [(S, {"to": {"name": "Ann", "zip": "02139"}})]),
    case(
        "parallel reversed",
        [(W, {"city": ["Paris"]}), (W, {"city": ["Rome"]})],
        [(W, {"city": "Rome"}), (W, {"city": "Paris"})],
    ),
    case(
        "parallel mixed tools",
        [(W, {"city": ["Paris"]}), (T, {"zone": ["CET"]}), (W, {"city": ["Rome"]})],
        [(W, {"city": "rome"}), (W, {"city": "Paris"}), (T, {"zone": "cet"})],
    ),
    case(
        "eight parallel calls",
        [(W, {"city": [f"City{i}"]}) for i in range(8)],
        [(W, {"city": f"City{i}"}) for i in reversed(range(8))],
    ),
    case(
        "parallel one wrong",
        [(W, {"city": ["Paris"]}), (W, {"city": ["Rome"]})],
        [(W, {"city": "Rome"}), (W, {"city": "Oslo"})],
    ),
    case("parallel count", [(W, {"city": ["Paris"]}), (W, {"city": ["Rome"]})], [(W, {"city": "Rome"})]),
    case(
        "parallel duplicate",
        [(W, {"city": ["Paris"]}), (W, {"city": ["Rome"]})],
        [(W, {"city": "Rome"}), (W, {"city": "Rome"})],
    ),
    case(
        "parallel first fit",
        [(W, {"city": ["Paris", "Rome"]}), (W, {"city": ["Paris"]})],
        [(W, {"city": "Paris"}), (W, {"city": "Rome"})],
    ),
    case(
        "parallel first fit, other order",
        [(W, {"city": ["Paris"]}), (W, {"city": ["Paris", "Rome"]})],
        [(W, {"city": "Paris"}), (W, {"city": "Rome"})],
    ),
    case(
        "parallel missing required",
        [(W, {"city": ["Paris"]}), (T, {"zone": ["CET"]})],
        [(W, {"city": "Paris"}), (T, {})],
    ),
]


def bfcl_type(schema: dict) -> dict:
    kind = {"object": "dict", "number": "float"}.get(schema["type"], schema["type"])
    out = {"type": kind, "description": ""}
    if "items" in schema:
        out["items"] = bfcl_type(schema["items"])
    if "properties" in schema:
        out["properties"] = {k: bfcl_type(v) for k, v in schema["properties"].items()}
    return out


def bfcl_function(name: str) -> dict:
    schema = TOOLS[name]
    params = {"type": "dict", "properties": {k: bfcl_type(v) for k, v in schema["properties"].items()}}
    return {"name": name, "description": "", "parameters": {**params, "required": schema["required"]}}


def ours_expected(name: str, possible: dict) -> dict:
    """The leaderboard's possible answer as loraforge's expected call: the first real value of each list
    is the expected value, the whole list is acceptable; inside an object, dotted keys."""
    arguments, acceptable = {}, {}
    for param, values in possible.items():
        real = [v for v in values if v != ""]
        if real and isinstance(real[0], dict):
            (inner,) = real  # the cases give one object per parameter
            arguments[param] = {k: next(v for v in vs if v != "") for k, vs in inner.items() if vs != [""]}
            acceptable.update({f"{param}.{k}": vs for k, vs in inner.items()})
            continue
        if real:
            arguments[param] = real[0]
        acceptable[param] = values
    return {"name": name, "arguments": arguments, "acceptable": acceptable}


def ours_verdict(item: dict):
    """loraforge's exact-match verdict on one case (what tests/test_crosscheck_replay.py replays)."""
    answer = ParsedAnswer(calls=[{"name": name, "arguments": args} for name, args in item["output"]])
    expected = [ours_expected(name, possible) for name, possible in item["possible"]]
    return check_example(answer, expected, TOOLS)


def load_bfcl():
    stub = types.ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = {MODEL.replace("_", "/"): types.SimpleNamespace(underscore_to_dot=False)}
    sys.modules["bfcl_eval.constants.model_config"] = stub
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    return ast_checker, Language.PYTHON


def main() -> int:
    try:
        ast_checker, python = load_bfcl()
    except ImportError as exc:
        print(f"bfcl-eval is not installed ({exc}); run: .venv/bin/pip install --no-deps bfcl-eval", file=sys.stderr)
        return 2
    rows, disagree = [], 0
    for item in CASES:
        names = [name for name, _ in item["possible"]]
        functions = [bfcl_function(name) for name in dict.fromkeys(names)]
        category = "parallel" if len(item["possible"]) > 1 else "simple"
        theirs = ast_checker(
            functions,
            [{name: args} for name, args in item["output"]],
            [{name: possible} for name, possible in item["possible"]],
            python,
            category,
            MODEL,
        )
        ours = ours_verdict(item)
        agree = ours.valid == theirs["valid"]
        disagree += not agree
        rows.append(
            {
                "case": item["label"],
                "loraforge": {"valid": ours.valid, "error": str(ours.error) if ours.error else None},
                "bfcl": {"valid": theirs["valid"], "error_type": theirs.get("error_type")},
                "agree": agree,
            }
        )
        print(f"{'ok  ' if agree else 'DIFF'} {item['label']}: loraforge {ours.valid}, bfcl {theirs['valid']}")
    result = {
        **provenance("crosscheck_bfcl.py"),
        "bfcl_eval_version": metadata.version("bfcl-eval"),
        "cases": len(rows),
        "agree": len(rows) - disagree,
        "valid_cases": sum(r["bfcl"]["valid"] for r in rows),
        "rows": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(OUT)
    print(f"{result['agree']} of {result['cases']} cases agree ({result['valid_cases']} valid); {OUT}")
    return 1 if disagree else 0


if __name__ == "__main__":
    raise SystemExit(main())
