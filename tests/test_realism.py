"""Request realism checks, the matched-call check, the request bank and its shots, realism figures."""

import json
import random
from pathlib import Path

import pytest

from loraforge.generators import realism, values
from loraforge.generators.bank import load_bank, role_prefix
from loraforge.generators.shots import shots_for_tool
from loraforge.tools import load_tools

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {t.name: t for t in load_tools(ROOT / "examples" / "api-tools.json")}


def call(name, arguments):
    t = TOOLS[name]
    return realism.CallInRequest(t, values.model_tool(t), arguments)


def test_copied_descriptions_are_caught():
    t = TOOLS["search_recipes"]
    assert realism.copied_description("please search the recipe database by ingredients: eggs", t)
    assert realism.copied_description("what can I cook with eggs and kale", t) is None
    # a parameter's description counts too
    assert realism.copied_description("set it to the target temperature in the given scale", TOOLS["set_thermostat"])


def test_a_no_call_request_must_not_ask_what_a_tool_does():
    weather = TOOLS["get_current_weather"]
    assert realism.mentions_tool("hows the weather looking", weather) == "weather"
    assert realism.mentions_tool("any good recipe for dinner?", TOOLS["search_recipes"]) == "recipes"
    assert realism.mentions_tool("why do cats purr?", weather) is None
    assert realism.mentions_tool("what's the current time in your head", weather) is None  # 'current' says nothing


@pytest.mark.parametrize(
    "request_text, arguments, leak",
    [
        ("hey, play false, query best hiking trails", {"query": "best hiking trails"}, True),
        ("set volume 80 please", {"volume": 80}, True),
        ("unit: celsius, weather in Oslo", {"unit": "celsius", "city": "Oslo"}, True),
        ("turn the volume up to 80", {"volume": 80}, False),
        ("weather in Oslo in celsius", {"unit": "celsius", "city": "Oslo"}, False),
    ],
)
def test_parameter_names_printed_as_labels(request_text, arguments, leak):
    assert (realism.name_leak(request_text, arguments) is not None) is leak


def test_matched_call_accepts_a_request_that_says_exactly_the_call():
    c = call("get_current_weather", {"location": "Lisbon", "unit": "celsius"})
    assert realism.unmatched_mentions("is it warm in Lisbon right now? celsius please", [c]) == []
    c = call("transfer_money", {"payee": "Maria Lopez", "amount": 18.5})
    assert realism.unmatched_mentions("Please send Maria Lopez $18.50 today", [c]) == []


@pytest.mark.parametrize(
    "name, request_text, arguments, missing",
    [
        # a value the request states but the call drops
        ("find_restaurants", "thai food in Brooklyn for 4 people", {"location": "Brooklyn", "cuisine": "thai"}, "4"),
        ("get_current_weather", "weather in Oslo in fahrenheit", {"location": "Oslo"}, "fahrenheit"),
        (
            "send_email",
            "email ann@x.com and bob@y.org about lunch",
            {"to": "ann@x.com", "subject": "lunch"},
            "bob@y.org",
        ),
        (
            "get_directions",
            "from the zoo to the Louvre by Metro",
            {"origin": "the zoo", "destination": "the Louvre"},
            "Metro",
        ),
        ("search_recipes", "recipe with tomatoes, tofu and soy sauce", {"ingredients": ["tomatoes"]}, "tofu"),
        ("send_email", 'email ann@x.com subject "Hi" body "see you"', {"to": "ann@x.com", "subject": "Hi"}, "see you"),
        ("set_thermostat", "set the heat to 21 °c", {"temperature": 21, "scale": "F"}, "°c"),
        # the name of an optional parameter that the call lacks: the request gave it a value
        (
            "transfer_money",
            "transfer $750 to James Bevan, memo October",
            {"payee": "James Bevan", "amount": 750},
            "memo",
        ),
        ("set_thermostat", "21 °c for the room upstairs", {"temperature": 21, "scale": "C"}, "room"),
    ],
)
def test_matched_call_catches_what_the_call_leaves_out(name, request_text, arguments, missing):
    found = realism.unmatched_mentions(request_text, [call(name, arguments)])
    assert any(missing.lower() in f.lower() for f in found), found


def test_values_must_be_stated_and_roles_told_apart():
    c = call("create_calendar_event", {"title": "Yoga", "date": "2026-02-10", "start_time": "18:00"})
    spans, missing = realism.value_spans(c, "Yoga on February 10th at 6pm")
    assert missing == [] and len(spans) == 3
    assert realism.value_spans(c, "Yoga on February 11th at 6pm")[1] == ["date"]
    assert realism.value_spans(c, "Yoga on February 10th at 6am")[1] == ["start_time"]
    route = call("get_directions", {"origin": "Oslo", "destination": "Bergen"})
    assert realism.order_problem("drive from Oslo to Bergen", route) is None
    assert realism.order_problem("drive to Bergen from Oslo", route) is None  # the roles are said
    assert realism.order_problem("Bergen, Oslo: how long?", route) is not None


def test_enum_choice_stated_in_a_request():
    model = values.model_tool(TOOLS["get_directions"])["mode"]
    assert realism.enum_choice_stated("how do I get there by bike", model) == "bicycling"
    assert realism.enum_choice_stated("on foot or by car?", model) is None  # two choices: ambiguous
    assert realism.enum_choice_stated("how do I get there", model) is None


def test_shots_copied_into_a_request_are_caught():
    c = call("set_thermostat", {"temperature": 22.5, "scale": "C"})
    assert realism.copied_values("bedroom 22.5 degrees Celsius", ["bedroom", "22"], c) == ["bedroom"]
    assert realism.copied_values("22.5 degrees Celsius", ["bedroom"], c) == []


def test_bank_entries_state_their_values_and_cover_many_topics():
    bank = load_bank()
    assert len(bank) >= 300
    assert len({e.topic for e in bank}) >= 100
    for entry in bank:
        for name, value in entry.details:
            parts = value.split(", ") if name.endswith("s") and ", " in value else [value]
            for part in parts:
                if part not in ("true", "false"):
                    assert part.lower() in entry.request.lower(), (entry.request, part)


def test_bank_entries_carry_the_kinds_of_their_values():
    entry = next(e for e in load_bank() if e.topic == "payment" and "memo" in dict(e.details))
    assert set(entry.kinds) >= {"person", "money", "memo"}
    lists = [e for e in load_bank() if e.detail_kinds and e.detail_kinds[0][:1] == ("array",)]
    assert lists and all(len(k) == 2 for e in lists for k in e.detail_kinds[:1])
    assert role_prefix("origin") == "from " and role_prefix("destination") == "to " and role_prefix("city") == ""


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_adapted_bank_shots_state_the_values_they_list(name):
    t = TOOLS[name]
    models = values.model_tool(t)
    source = values.ValueSource()
    found = shots_for_tool(t, models, source, random.Random(7))
    assert found, name
    for details, request in found:
        for detail in details:
            said = detail.split(" ", 1)[1] if detail.startswith(("from ", "to ")) else detail
            for part in said.replace(" and ", ", ").split(", "):
                assert part.lower() in request.lower(), (request, detail)


def _benchmark_requests():
    texts = []
    for path in (ROOT / "benchmarks" / "data").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                texts.append(next(m["content"] for m in json.loads(line)["messages"] if m["role"] == "user"))
    return texts


def test_realism_summary_flags_uncovered_tools_and_copies():
    tools = [TOOLS["get_current_weather"], TOOLS["set_alarm"]]
    row = {
        "messages": [
            {"role": "user", "content": "Returns the current weather conditions (temperature, sky, wind) observed"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get_current_weather", "arguments": {"location": "Oslo"}}}],
            },
        ],
        "meta": {"style": "single"},
    }
    summary = realism.summarise([row, row], tools)
    assert summary["uncovered_tools"] == ["set_alarm"]
    assert summary["description_copies"] == 2 and summary["calls_per_tool"]["get_current_weather"] == 2
    assert summary["distinct_1"] < 1.0 and summary["request_words"]["median"] > 5
    assert len(summary["examples"]) == 2


def test_a_travel_mode_said_as_biking_must_be_in_the_call():
    """'biking' names the bicycling mode: a call without mode does not match the request (seen in generated
    data: 'from the Gateway Arch, to Manchester, biking' kept with no mode)."""
    tool = next(t for t in load_tools("examples/api-tools.json") if t.name == "get_directions")
    models = values.model_tool(tool)
    request = "ok so from the Gateway Arch, to Manchester, biking"
    call = realism.CallInRequest(tool, models, {"origin": "the Gateway Arch", "destination": "Manchester"})
    assert realism.unmatched_mentions(request, [call]) == ["biking"]
    with_mode = realism.CallInRequest(tool, models, {**call.arguments, "mode": "bicycling"})
    assert realism.unmatched_mentions(request, [with_mode]) == []


@pytest.mark.parametrize(
    "text, negated",
    [
        ("ok so Miami weather, please, no fahrenheit", True),
        ("weather in Miami but not in fahrenheit", True),
        ("what's it like in Miami, in fahrenheit", False),
        ("Miami weather in fahrenheit, no rush", False),
    ],
)
def test_a_value_stated_after_a_negation_is_caught(text, negated):
    weather = call("get_current_weather", {"location": "Miami", "unit": "fahrenheit"})
    assert (realism.negated_value(text, weather) is not None) == negated


def test_a_parameter_name_is_no_mention_when_the_call_carries_it_or_the_tool_is_named_by_it():
    paid = call("transfer_money", {"payee": "James Bevan", "amount": 750, "memo": "rent"})
    assert realism.absent_parameters_named("pay James Bevan $750, memo rent", [paid]) == []
    text = call("send_text_message", {"phone_number": "+4412345678", "message": "hi"})
    assert realism.absent_parameters_named("text message to +4412345678: hi", [text]) == []


def test_a_value_the_request_states_only_in_part_is_caught():
    thermostat = call("set_thermostat", {"temperature": 78, "scale": "F", "room": "upstairs hallway"})
    assert realism.partly_stated("78 fahrenheit upstairs", thermostat, "room") == "upstairs"
    assert realism.partly_stated("78 fahrenheit please", thermostat, "room") is None
    # a word that another argument's value accounts for is not this argument's
    paid = call("transfer_money", {"payee": "Dinner Club", "amount": 40, "memo": "dinner money"})
    assert realism.partly_stated("send $40 to Dinner Club", paid, "memo") is None
    assert realism.partly_stated("send $40 to Dinner Club for the dinner", paid, "memo") == "dinner"


def test_an_optional_value_stated_in_part_rejects_the_request_instead_of_being_dropped():
    from loraforge.generators.toolcalls import ToolCallGenerator
    from loraforge.generators.verify import Rejected

    generator = ToolCallGenerator(load_tools(ROOT / "examples" / "api-tools.json"), client=None)
    generator.plan.restate_dropped = 0.0
    tool = generator.by_name["set_thermostat"]
    arguments = {"temperature": 78, "scale": "F", "room": "upstairs hallway"}
    with pytest.raises(Rejected) as caught:
        generator._verify_request(tool, arguments, "78 fahrenheit upstairs", [], random.Random(0))
    assert caught.value.reason == "unmatched_mention"
    arguments = {"temperature": 78, "scale": "F", "room": "upstairs hallway"}
    kept = generator._verify_request(tool, arguments, "78 fahrenheit please", [], random.Random(0))
    assert kept == "78 fahrenheit please" and "room" not in arguments  # stated nowhere: dropped as before
