import random

import jsonschema
import pytest

from loraforge.generators import prompts, verify
from loraforge.generators.toolcalls import GenerationStats, tool_call_row
from loraforge.tools import ToolDefinition, load_tools
from loraforge.tools.schema_sampling import sample_value
from loraforge.tools.simulate import accepts_call, simulate_response


@pytest.mark.parametrize(
    "value, text, grounded",
    [
        ("Paris", "What's the weather in paris?", True),
        ("Paris", "What's the weather in Rome?", False),
        (25, "Start a 25 minute timer", True),
        (25, "Start a 250 minute timer", False),
        (2.5, "convert 2.5 dollars", True),
        (100.0, "How much is 100 USD", True),
        ("2026-03-14", "remind me on March 14 to pay", True),
        ("2026-03-14", "remind me on 2026-03-14", True),
        ("2026-03-14", "remind me on March 15", False),
        (2500, "Convert 2,500 JPY", True),
        (["a", "b"], "a and b", True),
    ],
)
def test_grounding(value, text, grounded):
    assert verify.value_grounded(value, text) is grounded


def test_request_form_checks():
    assert verify.request_problem("hi") == "too_short"
    assert verify.request_problem("city=Paris: weather please") == "leaked_markup"
    assert verify.request_problem("What is the weather in Paris?") is None
    assert verify.clean_line(' "Turn it up to 35"\nmore') == "Turn it up to 35"


SCHEMAS = [
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 5}}, "required": ["n"]},
    {
        "type": "object",
        "properties": {"d": {"type": "string", "format": "date"}, "e": {"type": "string", "format": "email"}},
    },
    {
        "type": "object",
        "properties": {"u": {"enum": ["a", "b"]}, "x": {"type": "number", "minimum": 0.5, "maximum": 2}},
    },
    {
        "type": "object",
        "properties": {"list": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2}},
    },
    {
        "type": "object",
        "properties": {
            "nested": {"type": "object", "properties": {"k": {"type": "string", "maxLength": 3}}, "required": ["k"]}
        },
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_schema_samples_validate(schema):
    rng = random.Random(0)
    for _ in range(30):
        value = sample_value(schema, rng, optional_rate=1.0)
        jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())


def test_simulated_responses_are_deterministic_and_echo_arguments():
    tool = load_tools("examples/assistant-tools.yaml")[0]
    first = simulate_response(tool, {"city": "Quito"}, seed=3)
    assert first == simulate_response(tool, {"city": "Quito"}, seed=3)
    assert first["city"] == "Quito"
    jsonschema.validate(first, tool.returns)
    assert simulate_response(tool, {"city": "Quito"}, seed=4) != first


def test_tool_definitions_are_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    tool = ToolDefinition(
        name="evil",
        description=f"__import__('pathlib').Path('{marker}').touch()",
        parameters={"type": "object", "properties": {"cmd": {"type": "string", "default": f"touch {marker}"}}},
        returns={"type": "object", "properties": {"out": {"type": "string", "const": "$(touch " + str(marker) + ")"}}},
    )
    simulate_response(tool, {"cmd": "rm -rf /"}, seed=0)
    accepts_call(tool, {"cmd": "x"})
    assert not marker.exists()


def test_prompts_list_shots_and_end_with_the_new_values():
    tool = load_tools("examples/assistant-tools.yaml")[1]
    text = prompts.request_prompt(
        tool, [({"minutes": 10}, "Set a timer for 10 minutes.")], {"minutes": 7, "label": "tea"}
    )
    assert text.splitlines()[-1] == "- minutes=7, label=tea:"
    assert "- minutes=10: Set a timer for 10 minutes." in text


def test_row_format_is_openai_chat_jsonl():
    row = tool_call_row(
        [{"type": "function", "function": {"name": "f"}}],
        "do f",
        [("f", {"a": 1})],
        [{"ok": True}],
        "Done.",
        {"style": "single"},
    )
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    call = row["messages"][1]["tool_calls"][0]
    assert call == {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}


def test_stats_report_rates():
    stats = GenerationStats()
    stats.accepted["f"] += 3
    for _ in range(4):
        stats.reject("ungrounded", {"x": 1})
    report = stats.report()
    assert report["accepted"] == 3 and report["rejected"] == {"ungrounded": 4}
    assert report["rejection_rate"]["ungrounded"] == pytest.approx(4 / 7)
    assert len(report["rejected_samples"]["ungrounded"]) == 3
