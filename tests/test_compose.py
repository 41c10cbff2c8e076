"""Requests composed from a call without the teacher (generators/compose.py)."""

import random

import pytest

from loraforge.generators import compose, prompts, realism, values
from loraforge.tools import load_tools

TOOL_SETS = ["examples/api-tools.json", "benchmarks/data/unseen-tools.json", "examples/assistant-tools.yaml"]


def _drawn(tool, models, rng, source):
    arguments = {n: source.draw(m, rng) for n, m in models.items() if n in tool.required or rng.random() < 0.6}
    values.harmonise(models, arguments, source, rng)
    return arguments


@pytest.mark.parametrize("path", TOOL_SETS)
def test_a_composed_request_states_every_value_and_reads_like_a_person(path):
    """Every value is stated where grounding finds it; no description is copied and no parameter name is
    printed as a label, on tool sets the frames were not written for too."""
    source, composed = values.ValueSource(), 0
    for tool in load_tools(path):
        models = values.model_tool(tool)
        for seed in range(25):
            rng = random.Random(seed)
            arguments = _drawn(tool, models, rng, source)
            text = compose.compose(tool.name, prompts.topic_phrases(tool), models, arguments, rng)
            if text is None:
                assert any(isinstance(v, bool) for v in arguments.values()), arguments
                continue
            composed += 1
            for name, value in arguments.items():
                assert values.is_stated(models[name], value, text), (name, value, text)
            assert realism.copied_description(text, tool) is None, text
            assert realism.name_leak(text, arguments) is None, text
            assert "  " not in text and text.count("please") + text.count("Please") <= 1
    assert composed > 50


def test_values_take_the_frame_that_tells_their_role():
    tools = {t.name: t for t in load_tools("examples/api-tools.json")}
    money = values.model_tool(tools["transfer_money"])
    alarm = values.model_tool(tools["set_alarm"])
    route = values.model_tool(tools["get_directions"])
    recipes = values.model_tool(tools["search_recipes"])
    for seed in range(20):
        rng = random.Random(seed)
        assert compose.value_phrase("payee", money["payee"], "Maria Lopez", rng).startswith(("to Maria", "Maria"))
        assert compose.value_phrase("time", alarm["time"], "18:00", rng).split()[0] in ("at", "for")
        assert compose.value_phrase("origin", route["origin"], "Union Station", rng) == "from Union Station"
        assert compose.value_phrase("destination", route["destination"], "the Zoo", rng) == "to the Zoo"
        days = compose.value_phrase("repeat_days", alarm["repeat_days"], ["mon", "fri"], rng)
        assert days.startswith(("every ", "on ")) and "monday" in days and "friday" in days
        limit = compose.value_phrase("max_minutes", recipes["max_minutes"], 20, rng)
        assert limit.split()[0] in ("under", "in", "max", "no") and "20" in limit
    assert compose.frame_kind("shuffle", values.model_param("shuffle", {"type": "boolean"}), True) is None


def test_titles_come_quoted_and_unquoted():
    """People rarely quote a title: an adapter that saw only quoted ones does not learn where one ends."""
    event = values.model_tool({t.name: t for t in load_tools("examples/api-tools.json")}["create_calendar_event"])
    phrases = [compose.value_phrase("title", event["title"], "Dentist", random.Random(s)) for s in range(40)]
    assert all("Dentist" in p for p in phrases)
    quoted = sum('"Dentist"' in p for p in phrases)
    assert 0 < quoted < len(phrases), phrases


def test_an_action_is_asked_for_with_its_verb_and_a_lookup_as_a_question():
    tools = {t.name: t for t in load_tools("examples/api-tools.json")}
    money, forecast = tools["transfer_money"], tools["get_weather_forecast"]
    said = {compose.intent_phrase(money.name, prompts.topic_phrases(money), random.Random(s)) for s in range(60)}
    assert any(s.endswith(("send money", "transfer money", "move money")) for s in said)
    assert not any(s.startswith(("what's", "show me", "check the")) for s in said)  # no "what's the money"
    asked = {compose.intent_phrase(forecast.name, ["weather forecast"], random.Random(s)) for s in range(60)}
    assert "what's the weather forecast" in asked and all("weather forecast" in s for s in asked)
    alarm = tools["set_alarm"]
    assert {compose.intent_phrase(alarm.name, ["set alarm"], random.Random(s)) for s in range(40)} & {
        "set an alarm",
        "set the alarm",
    }


def test_the_plan_refuses_a_compose_rate_outside_0_to_1():
    from loraforge.errors import ConfigError
    from loraforge.generators.plan import GenerationPlan

    assert GenerationPlan().compose_rate == 0.5
    with pytest.raises(ConfigError, match="compose_rate"):
        GenerationPlan(compose_rate=1.5)
