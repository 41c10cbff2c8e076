import pytest

from loraforge.chat.parsing import ParsedAnswer, parse_answer
from loraforge.constants import ErrorCode
from loraforge.evaluators.exact_match import Leniency, check_call, check_example, normalise_string, values_equal

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        "days": {"type": "integer"},
        "threshold": {"type": "number"},
        "alerts": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "where": {"type": "object"},
        "readings": {"type": "array", "items": {"type": "number"}},
    },
    "required": ["city"],
}
SCHEMAS = {"get_weather": WEATHER, "get_time": {"type": "object", "properties": {"zone": {"type": "string"}}}}


def answer(*calls):
    return ParsedAnswer(calls=[{"name": n, "arguments": a} for n, a in calls])


def want(name, **arguments):
    return {"name": name, "arguments": arguments}


def code(got, expected):
    return check_example(got, expected, SCHEMAS).error


def test_exact_call_is_valid():
    assert check_example(answer(("get_weather", {"city": "Paris"})), [want("get_weather", city="Paris")], SCHEMAS).valid


@pytest.mark.parametrize(
    "got, expected, error",
    [
        (answer(("get_time", {})), [want("get_weather", city="Paris")], ErrorCode.WRONG_FUNC_NAME),
        (answer(("get_weather", {"unit": "celsius"})), [want("get_weather", city="Paris")], ErrorCode.MISSING_REQUIRED),
        (
            answer(("get_weather", {"city": "Paris", "colour": "red"})),
            [want("get_weather", city="Paris")],
            ErrorCode.UNEXPECTED_PARAM,
        ),
        (
            answer(("get_weather", {"city": "Paris", "days": "3"})),
            [want("get_weather", city="Paris", days=3)],
            ErrorCode.TYPE_ERROR,
        ),
        (answer(("get_weather", {"city": "Rome"})), [want("get_weather", city="Paris")], ErrorCode.VALUE_ERROR),
        (
            ParsedAnswer(malformed=True, raw="<tool_call>{oops"),
            [want("get_weather", city="Paris")],
            ErrorCode.MALFORMED_JSON,
        ),
        (ParsedAnswer(text="It is sunny."), [want("get_weather", city="Paris")], ErrorCode.NO_CALL),
        (answer(("get_weather", {"city": "Paris"})), [], ErrorCode.SPURIOUS_CALL),
        (
            answer(("get_weather", {"city": "Paris"})),
            [want("get_weather", city="Paris"), want("get_time", zone="CET")],
            ErrorCode.WRONG_COUNT,
        ),
    ],
)
def test_every_error_code(got, expected, error):
    assert code(got, expected) == error


def test_text_answer_expected_and_given():
    assert check_example(ParsedAnswer(text="Hello!"), [], SCHEMAS).valid


def test_parallel_calls_match_in_any_order():
    expected = [want("get_weather", city="Paris"), want("get_weather", city="Rome"), want("get_time", zone="CET")]
    got = answer(("get_time", {"zone": "cet"}), ("get_weather", {"city": "Rome"}), ("get_weather", {"city": "Paris"}))
    assert check_example(got, expected, SCHEMAS).valid
    wrong = answer(("get_time", {"zone": "CET"}), ("get_weather", {"city": "Rome"}), ("get_weather", {"city": "Oslo"}))
    result = check_example(wrong, expected, SCHEMAS)
    assert result.error == ErrorCode.VALUE_ERROR and result.param == "city"


def test_type_rules():
    # an integer is a valid number, a boolean is not an integer
    assert check_call(
        {"name": "get_weather", "arguments": {"city": "x", "threshold": 3}},
        want("get_weather", city="x", threshold=3.0),
        WEATHER,
    ).valid
    result = check_call(
        {"name": "get_weather", "arguments": {"city": "x", "days": True}},
        want("get_weather", city="x", days=1),
        WEATHER,
    )
    assert result.error == ErrorCode.TYPE_ERROR
    result = check_call(
        {"name": "get_weather", "arguments": {"city": "x", "days": 2.5}}, want("get_weather", city="x", days=2), WEATHER
    )
    assert result.error == ErrorCode.TYPE_ERROR


def test_acceptable_values_list():
    expected = {
        "name": "get_weather",
        "arguments": {"city": "New York"},
        "acceptable": {"city": ["New York", "NYC", "New York City"]},
    }
    for city in ("nyc", "new-york", "New York City"):
        assert check_call({"name": "get_weather", "arguments": {"city": city}}, expected, WEATHER).valid
    assert not check_call({"name": "get_weather", "arguments": {"city": "Boston"}}, expected, WEATHER).valid


def call(**arguments):
    return {"name": "get_weather", "arguments": arguments}


def test_rule1_an_unrequested_default_is_flagged_unless_lenient():
    expected = want("get_weather", city="Paris")
    assert check_call(call(city="Paris"), expected, WEATHER).valid
    flagged = check_call(call(city="Paris", unit="celsius"), expected, WEATHER)
    assert flagged.error == ErrorCode.UNEXPECTED_PARAM and flagged.param == "unit"
    assert check_call(call(city="Paris", unit="celsius"), expected, WEATHER, Leniency(defaults=True)).valid
    other = check_call(call(city="Paris", unit="fahrenheit"), expected, WEATHER, Leniency(defaults=True))
    assert other.error == ErrorCode.UNEXPECTED_PARAM
    # an expected default may be left out only when lenient, or when "" is acceptable
    named = want("get_weather", city="Paris", unit="celsius")
    assert check_call(call(city="Paris"), named, WEATHER).error == ErrorCode.VALUE_ERROR
    assert check_call(call(city="Paris"), named, WEATHER, Leniency(defaults=True)).valid
    loose = {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}, "acceptable": {"days": [3, ""]}}
    assert check_call(call(city="Paris"), loose, WEATHER).valid


def test_rule2_a_parameter_outside_the_schema_is_flagged_even_when_expected():
    expected = want("get_weather", city="Paris", colour="red")
    assert check_call(call(city="Paris", colour="red"), expected, WEATHER).error == ErrorCode.UNEXPECTED_PARAM
    assert check_call(call(city="Paris", colour="red"), expected, WEATHER, Leniency(params_outside_schema=True)).valid
    assert check_call(call(city="Paris", colour="red"), expected, None).valid  # no schema: nothing to hold it to


SHIP = {
    "type": "object",
    "properties": {
        "to": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "zip": {"type": "string"}, "floor": {"type": "integer"}},
            "required": ["name"],
        },
        "sizes": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["to"],
}


def test_rule3_array_items_are_typed_and_objects_may_omit_acceptable_keys():
    ship = lambda **a: {"name": "ship", "arguments": a}  # noqa: E731
    expected = {"name": "ship", "arguments": {"to": {"name": "Ann", "zip": "02139"}}, "acceptable": {"to.zip": [""]}}
    assert check_call(ship(to={"name": "Ann", "zip": "02139"}), expected, SHIP).valid
    assert check_call(ship(to={"name": "Ann"}), expected, SHIP).valid  # "" listed for to.zip
    strict = {"name": "ship", "arguments": {"to": {"name": "Ann", "zip": "02139"}}}
    assert check_call(ship(to={"name": "Ann"}), strict, SHIP).error == ErrorCode.VALUE_ERROR
    assert check_call(ship(to={"name": "Ann", "zip": "02139", "x": 1}), strict, SHIP).error == ErrorCode.VALUE_ERROR
    floor = {"name": "ship", "arguments": {"to": {"name": "Ann", "floor": 1}}}
    assert check_call(ship(to={"name": "Ann", "floor": 1.0}), floor, SHIP).valid  # by value, as the leaderboard
    assert check_call(ship(to={"name": "Ann", "floor": 2}), floor, SHIP).error == ErrorCode.VALUE_ERROR
    assert check_call(ship(to="Ann"), floor, SHIP).error == ErrorCode.TYPE_ERROR
    sizes = {"name": "ship", "arguments": {"to": {"name": "Ann"}, "sizes": [1, 2]}}
    assert check_call(ship(to={"name": "Ann"}, sizes=[1, 2.0]), sizes, SHIP).error == ErrorCode.TYPE_ERROR
    assert check_call(ship(to={"name": "Ann"}, sizes=[1, 2]), sizes, SHIP).valid


def test_rule4_many_parallel_calls_still_match_in_any_order():
    cities = [f"City{i}" for i in range(8)]
    expected = [want("get_weather", city=c) for c in cities]
    got = answer(*[("get_weather", {"city": c}) for c in reversed(cities)])
    assert check_example(got, expected, SCHEMAS).valid
    wrong = answer(*[("get_weather", {"city": c}) for c in reversed(cities[:-1])], ("get_weather", {"city": "Oslo"}))
    assert check_example(wrong, expected, SCHEMAS).error == ErrorCode.VALUE_ERROR


def test_parallel_calls_pair_in_order_as_the_leaderboard_unless_lenient():
    """The first predicted call fits both expected ones; taking it for the first leaves the second unpaired."""
    either = {"name": "get_weather", "arguments": {"city": "Paris"}, "acceptable": {"city": ["Rome"]}}
    expected = [either, want("get_weather", city="Paris")]
    got = answer(("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"}))
    assert check_example(got, expected, SCHEMAS).error == ErrorCode.VALUE_ERROR
    assert check_example(got, expected, SCHEMAS, Leniency(best_pairing=True)).valid
    assert check_example(got, list(reversed(expected)), SCHEMAS).valid  # in this order, first fit pairs both


def test_an_integer_item_in_an_array_of_numbers_is_refused_unless_lenient():
    expected = want("get_weather", city="Oslo", readings=[1.0, 2.5])
    assert check_call(call(city="Oslo", readings=[1.0, 2.5]), expected, WEATHER).valid
    refused = check_call(call(city="Oslo", readings=[1, 2.5]), expected, WEATHER)
    assert refused.error == ErrorCode.TYPE_ERROR and "readings[0]" in refused.message
    assert check_call(
        call(city="Oslo", readings=[1, 2.5]), expected, WEATHER, Leniency(integers_in_number_arrays=True)
    ).valid
    assert check_call(call(city="Oslo", threshold=2), want("get_weather", city="Oslo", threshold=2.0), WEATHER).valid


def test_rule5_only_spaces_are_stripped_not_every_whitespace():
    assert normalise_string("New York") == normalise_string("newyork")
    assert normalise_string("New\tYork") != normalise_string("NewYork")
    assert normalise_string("it's") == normalise_string('it"s')


def test_rule6_unreadable_output_where_no_call_is_expected_is_a_correct_no_call():
    unreadable = ParsedAnswer(malformed=True, raw="<tool_call>{oops")
    assert check_example(unreadable, [], SCHEMAS).valid
    assert check_example(unreadable, [want("get_weather", city="Paris")], SCHEMAS).error == ErrorCode.MALFORMED_JSON


def test_rule7_parameters_is_an_alias_only_when_asked():
    text = '<tool_call>{"name": "get_time", "parameters": {"zone": "UTC"}}</tool_call>'
    assert parse_answer(text).calls == [{"name": "get_time", "arguments": {}}]
    assert parse_answer(text, parameters_key=True).calls == [{"name": "get_time", "arguments": {"zone": "UTC"}}]


def test_rule8_acceptable_values_add_to_the_expected_value():
    expected = {"name": "get_weather", "arguments": {"city": "New York"}, "acceptable": {"city": ["NYC"]}}
    assert check_call(call(city="New York"), expected, WEATHER).valid
    assert check_call(call(city="nyc"), expected, WEATHER).valid
    assert check_call(call(city="Boston"), expected, WEATHER).error == ErrorCode.VALUE_ERROR


def test_values_compare_lists_in_order_and_objects_per_key():
    assert values_equal(["a", "b"], ["A", "b"])
    assert not values_equal(["b", "a"], ["a", "b"])
    assert values_equal({"x": 1, "y": "Z"}, {"y": "z", "x": 1.0})
    assert not values_equal({"x": 1}, {"x": 1, "y": 2})
    assert normalise_string("New-York, N.Y.") == "newyorkny"


def test_parse_answer_reads_tool_call_blocks_and_server_calls():
    text = '<tool_call>{"name": "get_time", "arguments": {"zone": "UTC"}}</tool_call>'
    assert parse_answer(text).calls == [{"name": "get_time", "arguments": {"zone": "UTC"}}]
    server = [{"type": "function", "function": {"name": "get_time", "arguments": '{"zone": "UTC"}'}}]
    assert parse_answer("", server).calls == [{"name": "get_time", "arguments": {"zone": "UTC"}}]
    assert parse_answer('<tool_call>{"name": "get_time", "argu').malformed
    assert parse_answer("Just text.").calls == [] and not parse_answer("Just text.").malformed
