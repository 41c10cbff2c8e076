import pytest

from loraforge.constants import ErrorCode
from loraforge.evaluators.exact_match import check_call, check_example, normalise_string, values_equal
from loraforge.evaluators.parsing import ParsedAnswer, parse_answer

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


def test_optional_parameter_rules():
    # omitted in the expected call and absent: fine; present with the default: fine; other value: error
    expected = want("get_weather", city="Paris")
    assert check_call({"name": "get_weather", "arguments": {"city": "Paris"}}, expected, WEATHER).valid
    assert check_call(
        {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}, expected, WEATHER
    ).valid
    bad = check_call({"name": "get_weather", "arguments": {"city": "Paris", "unit": "fahrenheit"}}, expected, WEATHER)
    assert bad.error == ErrorCode.UNEXPECTED_PARAM
    # expected names the default: leaving it out is fine
    assert check_call(
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        want("get_weather", city="Paris", unit="celsius"),
        WEATHER,
    ).valid
    # expected names a non-default value: leaving it out is an error
    missing = check_call(
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        want("get_weather", city="Paris", unit="fahrenheit"),
        WEATHER,
    )
    assert missing.error == ErrorCode.VALUE_ERROR
    # "" among the acceptable values means omission is acceptable
    loose = {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}, "acceptable": {"days": [3, ""]}}
    assert check_call({"name": "get_weather", "arguments": {"city": "Paris"}}, loose, WEATHER).valid


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
