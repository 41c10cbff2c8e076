"""Generated malformed inputs (Hypothesis): every loader either accepts its input or raises the project's
own error, quickly; never a traceback of another kind, never a hang."""

import json
import signal
import time
from contextlib import contextmanager

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loraforge.errors import LoraforgeError

# derandomized, so that CI runs the same examples each time; a case found while exploring becomes a plain test
SETTINGS = settings(
    max_examples=60,
    deadline=10_000,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

LIMIT_SECONDS = 10.0


class Hang(Exception):
    """An input kept a loader busy past LIMIT_SECONDS."""


@contextmanager
def hard_limit(seconds: float = LIMIT_SECONDS):
    """Interrupt the body after `seconds`: Hypothesis's deadline only reports a slow example once it ends,
    so a real hang would stall CI instead of failing it."""

    def interrupt(signum, frame):
        raise Hang(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_hard_limit_stops_a_hang():
    started = time.monotonic()
    with pytest.raises(Hang), hard_limit(0.2):
        while True:
            pass
    assert time.monotonic() - started < 2


scalars = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
schema_keys = st.sampled_from(
    [
        "type",
        "properties",
        "items",
        "required",
        "enum",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "format",
        "description",
        "pattern",
        "anyOf",
        "default",
        "$ref",
        "additionalProperties",
    ]
)
schemas = st.recursive(
    st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean", "array", "object", 5])}),
    lambda inner: (
        st.dictionaries(schema_keys, inner | json_values, max_size=5)
        | st.fixed_dictionaries(
            {"type": st.just("object"), "properties": st.dictionaries(st.text(max_size=6), inner, max_size=3)}
        )
    ),
    max_leaves=12,
)
tools = st.lists(
    st.fixed_dictionaries(
        {"name": st.text(max_size=12) | st.sampled_from(["get_weather", "f"]), "description": st.text(max_size=30)},
        optional={"parameters": schemas | json_values, "examples": json_values, "returns": schemas},
    )
    | json_values,
    max_size=3,
)


@SETTINGS
@given(data=tools | json_values)
def test_any_tools_file_loads_or_is_refused_cleanly(tmp_path_factory, data):
    from loraforge.tools import load_tools
    from loraforge.tools.schema_sampling import sample_value

    path = tmp_path_factory.mktemp("t") / "tools.json"
    path.write_text(json.dumps(data))
    with hard_limit():
        try:
            loaded = load_tools(path)
        except LoraforgeError:
            return
        import random

        for tool in loaded:  # what loads must also be sampled without a hang or a crash
            try:
                sample_value(tool.parameters, random.Random(0))
            except LoraforgeError:
                pass


rows = st.dictionaries(
    st.sampled_from(["messages", "tool_calls", "tools", "item", "label", "id"]), json_values, max_size=4
)


@SETTINGS
@given(lines=st.lists(rows | json_values, min_size=1, max_size=4))
def test_any_eval_or_training_file_loads_or_is_refused_cleanly(tmp_path_factory, lines):
    from loraforge.evaluators.eval_cmd import load_eval_rows
    from loraforge.generators.labels import load_labeled
    from loraforge.trainers.data import load_training_rows

    path = tmp_path_factory.mktemp("r") / "rows.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    for load in (lambda: load_eval_rows(path, tools=[]), lambda: load_training_rows(path), lambda: load_labeled(path)):
        with hard_limit():
            try:
                load()
            except LoraforgeError:
                pass


# Rows built from the real keys, so that the generated data gets past the first checks and reaches the
# scoring that runs after a server has started.
roles = st.sampled_from(["user", "user", "user", "assistant", "system", "tool", 5, None, ("user",)])
messages = st.fixed_dictionaries({"role": roles}, optional={"content": json_values, "tool_calls": json_values})
arguments = st.dictionaries(st.sampled_from(["city", "unit"]), json_values, max_size=2)
calls = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["get_weather", "f"]) | json_values,
        "arguments": arguments | st.text(max_size=12) | json_values,
    },
    optional={"acceptable": st.dictionaries(st.sampled_from(["city", "unit"]), json_values, max_size=2) | json_values},
)
real_rows = st.fixed_dictionaries(
    {"messages": st.lists(messages, min_size=1, max_size=3)},
    optional={
        "tool_calls": st.lists(calls, max_size=2) | json_values,
        "tools": json_values,
        "meta": st.dictionaries(st.text(max_size=5), json_values, max_size=2) | json_values,
        "id": json_values,
    },
)


@settings(SETTINGS, max_examples=200)
@given(lines=st.lists(real_rows, min_size=1, max_size=3))
def test_eval_rows_that_load_are_scored_without_a_crash(tmp_path_factory, lines):
    """What load_eval_rows accepts goes to llama.cpp and then to the checker: every accepted row must
    yield its decision points and be scored (here against an empty answer) without a traceback."""
    from loraforge.chat.parsing import parse_answer
    from loraforge.evaluators.eval_cmd import load_eval_rows
    from loraforge.evaluators.exact_match import check_example
    from loraforge.evaluators.toolcall_eval import decision_points, schemas_of

    path = tmp_path_factory.mktemp("e") / "eval.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    properties = {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}
    schema = {"type": "object", "properties": properties}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": schema}}]
    with hard_limit():
        try:
            rows, _ = load_eval_rows(path, tools=tools)
        except LoraforgeError:
            return
        for row in rows:
            for _, expected in decision_points(row):
                if expected is None:
                    continue
                echo = [  # the expected calls themselves, as the server would return them
                    {"type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                    for c in expected
                ]
                for answer in (parse_answer("", []), parse_answer("", echo)):
                    check_example(answer, expected, schemas_of(row))


config_keys = st.sampled_from(
    [
        "examples",
        "iterations",
        "heldout_fraction",
        "seed",
        "parallel",
        "server_urls",
        "training",
        "strategy",
        "generation",
        "time_budget_minutes",
        "out",
        "tools",
        "judge",
        "eval_max_tokens",
    ]
)


def _section(cls: type) -> st.SearchStrategy:
    """A settings section with the real field names of `cls` and any values, some of them of the right type."""
    import dataclasses

    names = st.sampled_from([f.name for f in dataclasses.fields(cls)])
    values = json_values | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 5)
    return st.dictionaries(names, values | st.dictionaries(st.text(max_size=8), values, max_size=3), max_size=4)


def _sections() -> st.SearchStrategy:
    from loraforge.agent.config import RunConfig
    from loraforge.agent.strategy import StrategyConfig
    from loraforge.generators.plan import GenerationPlan
    from loraforge.trainers.config import TrainConfig

    return st.fixed_dictionaries(
        {},
        optional={
            "training": _section(TrainConfig),
            "generation": _section(GenerationPlan),
            "strategy": _section(StrategyConfig),
            "examples": st.integers(-5, 500) | json_values,
            "time_budget_minutes": st.floats(allow_nan=True) | json_values,
        },
    ) | _section(RunConfig)


@settings(SETTINGS, max_examples=300)
@given(data=st.dictionaries(config_keys, json_values, max_size=4) | json_values | st.deferred(_sections))
def test_any_config_file_loads_or_is_refused_cleanly(tmp_path_factory, data):
    from loraforge.agent.config import load_config

    path = tmp_path_factory.mktemp("c") / "lf.yaml"
    path.write_text(yaml.safe_dump(data))
    with hard_limit():
        try:
            load_config(path)
        except LoraforgeError:
            pass


@pytest.mark.parametrize("size", [10, 1000])
def test_huge_array_bounds_do_not_hang_sampling(size):
    import random

    from loraforge.tools.schema_sampling import sample_value

    with hard_limit():
        value = sample_value(
            {"type": "array", "items": {"type": "integer"}, "minItems": 0, "maxItems": 10**9}, random.Random(size)
        )
    assert isinstance(value, list) and len(value) <= 25
