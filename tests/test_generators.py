import asyncio
import random

import jsonschema
import pytest

from loraforge.errors import ConfigError
from loraforge.generators import prompts, verify
from loraforge.generators.dedup import NearDuplicateIndex, rouge_l
from loraforge.generators.plan import GenerationPlan
from loraforge.generators.stats import GenerationStats
from loraforge.generators.toolcalls import call_message, expected_calls, tool_message
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
    assert verify.request_problem("Request: weather in Paris") == "leaked_markup"  # the prompt layout
    assert verify.request_problem("Paris | tomorrow") == "leaked_markup"
    assert verify.request_problem("9:30 dentist, add it to my calendar") is None
    assert verify.request_problem("What is the weather in Paris?") is None
    assert verify.clean_line(' "Turn it up to 35"\nmore') == "Turn it up to 35"


def test_a_quote_that_closes_a_value_at_the_end_stays():
    line = verify.clean_line('email kim@x.io, subject "Thanks", body "see you at 8"')
    assert line.endswith('"see you at 8"')
    assert verify.request_problem(line) is None
    assert verify.clean_line('"email kim@x.io, body "see you at 8"') == 'email kim@x.io, body "see you at 8"'


def test_an_open_quote_and_a_stutter_are_rejected():
    assert verify.request_problem('email kim@x.io, body "see you at 8') == "unbalanced_quote"
    assert verify.request_problem("pizza places, Denver, Denver") == "repetitive"
    assert verify.request_problem("a table for 4 people, 4 people in Memphis") == "repetitive"
    assert verify.request_problem("a table for 4 people in Denver, not 5") is None
    assert verify.request_problem("7 days in doha, qatar, 7 days") == "repetitive"  # a value said twice
    assert verify.request_problem("from 9 am to 5 pm, 2 days") is None


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
        prompts.tool_topic(tool), [(["10 minutes"], "Set a timer for 10 minutes.")], ["7 minutes", "tea"]
    )
    assert text.splitlines()[-2:] == ["Details: 7 minutes, tea", "Request:"]
    assert "Details: 10 minutes\nRequest: Set a timer for 10 minutes.\n" in text
    assert "about set timer" in text.splitlines()[0]
    assert tool.description not in text  # descriptions are never shown: a small teacher copies them


def test_row_format_is_openai_chat_jsonl():
    row = {
        "messages": [
            {"role": "user", "content": "do f"},
            call_message([("f", {"a": 1})]),
            tool_message({"ok": True}),
            {"role": "assistant", "content": "Done."},
        ]
    }
    call = row["messages"][1]["tool_calls"][0]
    assert call == {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    assert row["messages"][2] == {"role": "tool", "content": '{"ok": true}'}
    assert expected_calls(row) == [[{"name": "f", "arguments": {"a": 1}}]]


def test_rouge_l_and_near_duplicates():
    assert rouge_l("set a timer for 10 minutes", "set a timer for 10 minutes") == 1.0
    assert rouge_l("set a timer for 10 minutes", "what is the weather in Oslo") < 0.2
    index = NearDuplicateIndex(0.7)
    assert index.add("Set a timer for 14 minutes please")
    assert not index.add("set a timer for 17 minutes please")
    assert index.add("Could you time my pasta, about 17 minutes?")
    assert index.add("a a a a", force=True) and index.is_duplicate("a a a a")


def test_plan_validates_and_weights_styles():
    import pytest as _pytest

    from loraforge.errors import ConfigError

    with _pytest.raises(ConfigError, match="Unknown styles"):
        GenerationPlan(style_weights={"sinlge": 1.0})
    with _pytest.raises(ConfigError, match="at least one style"):
        GenerationPlan(style_weights={"parallel": 0.0, "single": 0.0})
    assert GenerationPlan(param_weights={"t.p": 1.5}).optional_rate("t", "p") == pytest.approx(0.9)
    assert GenerationPlan().optional_rate("t", "q") == 0.6


def test_stats_report_rates():
    stats = GenerationStats()
    for _ in range(3):
        stats.accept({"meta": {"style": "single", "tools_called": ["f"]}})
    for _ in range(4):
        stats.reject("ungrounded", {"x": 1})
    report = stats.report()
    assert report["accepted"] == 3 and report["rejected"] == {"ungrounded": 4}
    assert report["per_style"] == {"single": 3} and report["per_tool"] == {"f": 3}
    assert report["rejection_rate"]["ungrounded"] == pytest.approx(4 / 7, abs=1e-4)
    assert len(report["rejected_samples"]["ungrounded"]) == 3


@pytest.mark.parametrize(
    "answer, problem",
    [
        ("It is 21 degrees and sunny in Oslo.", None),
        ("It is sunny.", "missing_fact"),
        ("You walked 21 steps in Oslo, sunny, 8412 times.", "invented_number"),
        ("ok", "too_short"),
    ],
)
def test_answer_faithfulness(answer, problem):
    result = {"city": "Oslo", "temperature": 21, "condition": "sunny"}
    assert verify.answer_problem(answer, "weather in Oslo?", result) == problem


def test_register_variation_keeps_values():
    rng = random.Random(1)
    for _ in range(50):
        text = prompts.vary_register("Convert 2500 JPY to GBP.", rng)
        assert all(verify.value_grounded(v, text) for v in (2500, "JPY", "GBP"))
        assert "please, please" not in text.lower()


def test_seeds_and_benchmark_sets_are_disjoint():
    """Built-in shots, no-call seeds and the example tools files' own worked examples steer what the teacher
    writes: none may come near a request of a benchmark set, or the benchmark would score memorised text
    (ROUGE-L below 0.7, the dedup threshold)."""
    import json
    from pathlib import Path

    from loraforge.generators.bank import load_bank
    from loraforge.generators.toolcalls import no_call_seeds
    from loraforge.tools import load_tools

    root = Path(__file__).resolve().parents[1]
    examples = [
        e.request for f in sorted((root / "examples").glob("*tools*")) for t in load_tools(f) for e in t.examples
    ]
    seeds = [entry.request for entry in load_bank()] + list(no_call_seeds()) + examples
    data = root / "benchmarks" / "data"
    checked = 0
    for path in sorted(data.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            request = next(m["content"] for m in row["messages"] if m["role"] == "user")
            closest = max(seeds, key=lambda s: rouge_l(s, request))
            assert rouge_l(closest, request) < 0.7, (path.name, request, closest)
            checked += 1
    assert checked >= 140 and len(seeds) >= 400


def test_every_seed_is_in_the_dedup_filter():
    from loraforge.generators.bank import load_bank
    from loraforge.generators.toolcalls import ToolCallGenerator, no_call_seeds

    generator = ToolCallGenerator(load_tools("examples/assistant-tools.yaml"), client=None)
    seeds = [entry.request for entry in load_bank()] + list(no_call_seeds())
    missing = [text for text in seeds if not generator.dedup.is_duplicate(text)]
    assert len(seeds) > 300 and missing == []


def test_optional_parameters_are_steered_to_their_planned_share():
    """Requests with more values fail verification more often; the generator asks for an optional
    parameter more often while the kept calls carry it less often than planned."""
    from loraforge.generators.toolcalls import ToolCallGenerator, call_message

    generator = ToolCallGenerator(load_tools("examples/api-tools.json"), client=None)
    planned = generator.plan.optional_rate("send_email", "body")
    assert generator._optional_rate("send_email", "body") == planned  # nothing kept yet: the plan
    for i in range(8):
        arguments = {"to": f"a{i}@x.org", "subject": "hi"} | ({"body": "see you"} if i == 0 else {})
        generator.stats.accept({"messages": [call_message([("send_email", arguments)])], "meta": {}})
    assert generator.stats.kept_share("send_email", "body") == 1 / 8
    assert planned < generator._optional_rate("send_email", "body") <= 0.95
    for i in range(12):
        body = {"to": f"b{i}@x.org", "subject": "hi", "body": "text"}
        generator.stats.accept({"messages": [call_message([("send_email", body)])], "meta": {}})
    assert generator.stats.kept_share("send_email", "body") > planned
    assert generator._optional_rate("send_email", "body") == planned  # at or above the plan: left alone


def test_a_dropped_optional_value_is_restated_so_that_the_request_states_it():
    from loraforge.generators import restate, values

    tools = {t.name: t for t in load_tools("examples/api-tools.json")}
    models = values.model_tool(tools["search_recipes"])
    rng = random.Random(0)
    for _ in range(20):
        text = restate.restated("something with chicken and lemon?", models["diet"], "gluten_free", rng)
        assert text is not None and text.startswith("something with chicken and lemon")
        assert values.is_stated(models["diet"], "gluten_free", text)
        assert "diet" not in text  # the value, never the parameter's name
    limit = restate.restated("recipes with eggs", models["max_minutes"], 20, rng)
    assert limit is not None and values.is_stated(models["max_minutes"], 20, limit)
    event = values.model_tool(tools["create_calendar_event"])
    for _ in range(10):  # an event's length is not a limit
        text = restate.restated("lunch with Sam", event["duration_minutes"], 45, random.Random(_))
        assert "max" not in text and "under" not in text and "45" in text
    recipient = values.model_tool(tools["ship_package"])["recipient"]
    assert restate.restated("ship it", recipient, {"name": "A"}, rng) is None  # no phrase for an object


def test_chained_requests_make_both_calls_in_the_first_turn():
    """Two independent requests joined by "then" are answered with both calls at once, as the
    leaderboard and loraforge eval expect: a model that waits for the first result costs a round trip."""
    from loraforge.generators.toolcalls import ToolCallGenerator, expected_calls

    class Teacher:  # writes each request as the details it is asked to state; "Done." for everything else
        affinity_slots = 0

        async def complete(self, prompt, **kwargs):
            last = prompt.rstrip().splitlines()
            if last[-1] == "Request:" and last[-2].startswith("Details: "):
                return "please sort out " + last[-2][len("Details: ") :]
            return "Done."

        async def chat(self, messages, **kwargs):
            return {"content": "Done.", "tool_calls": []}

    tools = load_tools("examples/assistant-tools.yaml")
    generator = ToolCallGenerator(tools, Teacher(), GenerationPlan(style_weights={"chain": 1.0}), seed=1)
    rows = asyncio.run(generator.generate(list(range(6))))
    assert rows, generator.stats.report()["rejected"]
    for row in rows:
        assert row["meta"]["style"] == "chain"
        turns = expected_calls(row)
        assert len(turns) == 1 and len(turns[0]) == 2
        assert [m["role"] for m in row["messages"]] == ["user", "assistant", "tool", "tool", "assistant"]


def test_a_restated_value_is_kept_and_reverted_when_its_phrase_breaks_a_check(monkeypatch):
    from loraforge.generators import realism
    from loraforge.generators.toolcalls import ToolCallGenerator

    generator = ToolCallGenerator(load_tools("examples/api-tools.json"), client=None)
    generator.plan.restate_dropped = 1.0
    tool = generator.by_name["search_recipes"]
    arguments = {"ingredients": ["eggs"], "diet": "vegan"}
    kept = generator._verify_request(tool, arguments, "recipes with eggs", [], random.Random(0))
    assert kept != "recipes with eggs" and "vegan" in kept.lower() and arguments["diet"] == "vegan"
    assert generator.stats.notes["restated_optional"] == 1

    real = realism.unmatched_mentions
    monkeypatch.setattr(
        realism, "unmatched_mentions", lambda text, calls: ["x"] if "vegan" in text.lower() else real(text, calls)
    )
    arguments = {"ingredients": ["eggs"], "diet": "vegan"}
    kept = generator._verify_request(tool, arguments, "recipes with eggs", [], random.Random(0))
    assert kept == "recipes with eggs" and arguments == {"ingredients": ["eggs"]}  # as before restating existed
    assert generator.stats.notes["restate_reverted"] == 1


def test_a_tool_is_reported_stuck_only_after_its_finished_attempts_fail():
    # Attempts are counted when a row is started; a run starts many rows at once, so a tool can reach 30
    # started attempts before any teacher answer is back. Only rejected attempts say it is stuck.
    from loraforge.generators.toolcalls import ToolCallGenerator

    generator = ToolCallGenerator(load_tools("examples/api-tools.json"), client=None)
    warnings: list[str] = []
    generator.on_warning = warnings.append
    generator.stats.tool_attempts["send_email"] = 40
    generator._warn_if_stuck("send_email")
    assert warnings == []
    for _ in range(30):
        generator.stats.reject("ungrounded", {"tool": "send_email"})
    generator._warn_if_stuck("send_email")
    assert len(warnings) == 1 and "'send_email' after 30 rejected attempts (ungrounded 30)" in warnings[0]


def test_a_free_text_value_widens_to_the_users_whole_quote():
    request = 'email kim@x.io, subject "Thanks for yesterday", body "Thanks, see you at 8!"'
    assert verify.widen_to_quote("Thanks", request) == "Thanks for yesterday"
    assert verify.widen_to_quote("see you at 8", request) == "Thanks, see you at 8!"
    assert verify.widen_to_quote("dinner", "text +4412345678: dinner at 8?") == "dinner"
    assert verify.widen_to_quote("late", "I'm running late, don't wait") == "late"  # apostrophes are not quotes


def test_the_details_start_with_what_the_tool_is_about_at_the_planned_rate():
    from loraforge.generators.toolcalls import ToolCallGenerator

    tools = load_tools("examples/api-tools.json")
    forecast = next(t for t in tools if t.name == "get_weather_forecast")
    arguments = {"location": "Denver", "days": 3}
    for rate, low, high in ((0.0, 0, 0), (1.0, 200, 200), (0.5, 70, 130)):
        generator = ToolCallGenerator(tools, client=None, plan=GenerationPlan(topic_rate=rate))
        rng = random.Random(0)
        firsts = [generator._details(forecast, arguments, rng)[0] for _ in range(200)]
        assert low <= firsts.count("weather forecast") <= high
    with pytest.raises(ConfigError, match="topic_rate"):
        GenerationPlan(topic_rate=1.5)


def test_a_topic_is_said_the_ways_people_say_it():
    tools = {t.name: t for t in load_tools("examples/api-tools.json")}
    assert prompts.topic_phrases(tools["transfer_money"]) == ["transfer money", "send money", "move money", "money"]
    assert prompts.topic_phrases(tools["get_weather_forecast"]) == ["weather forecast"]  # no verb to vary
    assert "thermostat" in prompts.topic_phrases(tools["set_thermostat"])
