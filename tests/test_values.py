"""The value model: kinds, ranges and examples read from descriptions, plausible values, spoken forms."""

import random

import jsonschema
import pytest

from loraforge.generators import phrasing, values
from loraforge.tools import ToolDefinition, load_tools


def tool(**properties):
    return ToolDefinition(name="t", description="Test tool.", parameters={"type": "object", "properties": properties})


@pytest.mark.parametrize(
    "name, schema, kind",
    [
        ("city", {"type": "string"}, "city"),
        ("location", {"type": "string", "description": "City and state, e.g. 'Berkeley, CA'"}, "location"),
        ("payee", {"type": "string"}, "person"),
        ("to", {"type": "string", "format": "email"}, "email"),
        ("phone_number", {"type": "string"}, "phone"),
        ("start_time", {"type": "string", "description": "24-hour HH:MM"}, "time"),
        ("date", {"type": "string", "description": "YYYY-MM-DD"}, "date"),
        ("amount", {"type": "number", "description": "Amount in US dollars"}, "money"),
        ("weight_kg", {"type": "number"}, "weight"),
        ("party_size", {"type": "integer"}, "count"),
        ("days", {"type": "integer", "description": "Number of days, between 1 and 10."}, "days"),
        ("subject", {"type": "string"}, "title"),
        ("cuisine", {"type": "string"}, "cuisine"),
        ("command", {"type": "string", "description": "Shell command to run"}, "command"),
        ("unit", {"type": "string", "enum": ["c", "f"]}, "enum"),
        ("widget_flavour", {"type": "string"}, "free"),
        # a description that defines the format beats the name: an "origin" given as an IATA code
        ("origin", {"type": "string", "description": "IATA code of the departure airport, e.g. 'SFO'."}, "airport"),
        ("base", {"type": "string", "description": "ISO 4217 currency code."}, "currency"),
        ("recipient", {"type": "string", "description": "Phone number to text."}, "phone"),
        # a bare "name" is a name of what its description says
        ("name", {"type": "string", "description": "Product name."}, "product"),
        ("name", {"type": "string", "description": "Name of the restaurant."}, "restaurant"),
        ("name", {"type": "string", "description": "Full name of the recipient."}, "person"),
        # only a description word hints at a kind, and the description lists examples: they lead
        ("sources", {"type": "string", "description": "Outlets to search, e.g. 'BBC' or 'Reuters'."}, "free"),
        ("calories", {"type": "integer", "description": "Estimated calories burned."}, "calories"),
    ],
)
def test_kinds_come_from_name_description_type_and_format(name, schema, kind):
    assert values.model_param(name, schema).kind == kind


@pytest.mark.parametrize(
    "description, bounds",
    [
        ("Number of days to forecast, between 1 and 10.", (1, 10)),
        ("Length of the event in minutes (15 to 480).", (15, 480)),
        ("Volume level 0-100", (0, 100)),
        ("Weight in kilograms (up to 30).", (None, 30)),
        ("Number of diners, 1-12.", (1, 12)),
        ("A percentage", (0, 100)),
        ("Any size", (None, None)),
    ],
)
def test_ranges_stated_only_in_descriptions(description, bounds):
    assert values.stated_range(description) == bounds


def test_examples_stated_in_descriptions():
    assert values.stated_examples("City, e.g. 'Berkeley, CA' or 'Lyon, France'.") == ["Berkeley, CA", "Lyon, France"]
    assert values.stated_examples("Type of food, e.g. 'thai', 'italian'.") == ["thai", "italian"]
    assert values.stated_examples("Plain text.") == []


def test_drawn_numbers_respect_stated_and_schema_ranges():
    source = values.ValueSource()
    rng = random.Random(0)
    volume = values.model_param("volume", {"type": "integer", "description": "Volume level, between 0 and 100."})
    money = values.model_param("amount", {"type": "number", "exclusiveMinimum": 0, "description": "in US dollars"})
    days = values.model_param("days", {"type": "integer", "minimum": 2, "maximum": 4})
    for _ in range(200):
        assert 0 <= source.draw(volume, rng) <= 100
        assert source.draw(money, rng) > 0
        assert 2 <= source.draw(days, rng) <= 4
    assert values.plausible(volume, 1200) is not None
    assert values.plausible(volume, 80) is None


def test_every_drawn_value_validates_and_is_plausible():
    source = values.ValueSource()
    for path in ("examples/api-tools.json", "examples/assistant-tools.yaml"):
        for t in load_tools(path):
            models = values.model_tool(t)
            rng = random.Random(1)
            for _ in range(25):
                arguments = {name: source.draw(model, rng, optional_rate=1.0) for name, model in models.items()}
                values.harmonise(models, arguments, source, rng)
                jsonschema.validate(arguments, t.parameters, format_checker=jsonschema.FormatChecker())
                for name, value in arguments.items():
                    assert values.plausible(models[name], value, t.name) is None, (t.name, name, value)


def test_temperatures_agree_with_the_scale_beside_them():
    t = load_tools("examples/api-tools.json")
    thermostat = next(x for x in t if x.name == "set_thermostat")
    models = values.model_tool(thermostat)
    source = values.ValueSource()
    rng = random.Random(2)
    for scale, low, high in (("F", 55, 90), ("C", 15, 30)):
        arguments = {"temperature": 0, "scale": scale}
        values.harmonise(models, arguments, source, rng)
        assert low <= arguments["temperature"] <= high


def test_arrays_and_nested_objects():
    source = values.ValueSource()
    rng = random.Random(3)
    days = values.model_param(
        "repeat_days",
        {"type": "array", "items": {"type": "string", "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}},
    )
    order = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    for _ in range(30):
        picked = source.draw(days, rng)
        assert picked and picked == sorted(picked, key=order.index) and len(set(picked)) == len(picked)
    address = values.model_param(
        "recipient",
        {
            "type": "object",
            "properties": {"name": {"type": "string"}, "city": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["name", "city"],
        },
    )
    assert [f.kind for f in address.fields.values()] == ["person", "city", "postal_code"]
    for _ in range(10):
        value = source.draw(address, rng)
        assert {"name", "city"} <= set(value)
    assert values.kinds_of(address) == ["object", "person", "city", "postal_code"]


def test_pooled_values_are_checked_for_plausibility():
    free = values.model_param("widget_flavour", {"type": "string"})
    assert values.needs_pool(free)
    assert values.plausible(free, "zesty lime") is None
    assert values.plausible(free, "example value") is not None
    assert values.plausible(free, "widget flavour berry") is not None  # the parameter's name as a value
    assert values.plausible(free, "cast movies_3_FindMovies", "movies_3_FindMovies") is not None
    city = values.model_param("city", {"type": "string"})
    assert values.plausible(city, "date willow beta 2") is not None


@pytest.mark.parametrize(
    "value, description, said",
    [
        ("gluten_free", "", "gluten free"),
        ("C", "Temperature scale: C for Celsius, F for Fahrenheit.", "celsius"),
        ("bicycling", "", "bicycling"),
        ("USD", "", "dollars"),
    ],
)
def test_enums_are_worded_the_way_people_say_them(value, description, said):
    phrases = phrasing.enum_phrases(value, description)
    assert phrases[0] == said and value in phrases


def test_spoken_forms_are_found_back_in_requests():
    source = values.ValueSource()
    rng = random.Random(4)
    for t in load_tools("examples/api-tools.json"):
        models = values.model_tool(t)
        for _ in range(10):
            for name, model in models.items():
                value = source.draw(model, rng)
                if isinstance(value, bool) or value == [] or isinstance(value, dict):
                    continue
                text = f"please do it with {values.spoken(model, value, rng)} thanks"
                assert values.is_stated(model, value, text), (t.name, name, value, text)


@pytest.mark.parametrize(
    "value, text, found",
    [
        ("18:00", "wake me at 6pm", True),
        ("18:00", "wake me at 18:00", True),
        ("06:00", "wake me at 6 am", True),
        ("11:30", "alarm at 11:30 p.m.", False),
        ("23:30", "alarm at 11:30 p.m.", True),
        ("07:30", "7:30pm works", False),
        ("12:00", "lunch at noon", True),
    ],
)
def test_times_of_day(value, text, found):
    assert (phrasing.find_time(value, text) is not None) is found


def test_stated_part_keeps_what_the_request_says():
    items = values.model_param("ingredients", {"type": "array", "items": {"type": "string"}})
    assert values.stated_part(items, ["eggs", "kale"], "omelette with eggs") == ["eggs"]
    assert values.stated_part(items, ["kale"], "omelette with eggs") is None
    where = values.model_param(
        "to",
        {"type": "object", "properties": {"name": {"type": "string"}, "zip": {"type": "string"}}, "required": ["name"]},
    )
    assert values.stated_part(where, {"name": "Ann Lee", "zip": "02139"}, "send to Ann Lee") == {"name": "Ann Lee"}
    assert values.stated_part(where, {"name": "Ann Lee", "zip": "02139"}, "send to 02139") is None


def test_a_free_parameter_with_stated_examples_takes_its_values_from_a_pool_seeded_with_them():
    """Before, such a parameter drew nonsense ("velvet velvet") 85% of the time: it skipped the pool."""
    model = values.model_param("widget", {"type": "string", "description": "Widget style, e.g. 'round' or 'square'."})
    assert model.kind == "free" and model.examples == ["round", "square"]
    assert values.needs_pool(model)


def test_the_tool_decides_what_a_generic_text_or_product_is():
    reminder = ToolDefinition(
        name="create_reminder",
        description="Creates a reminder that notifies the user at a given date and time.",
        parameters={"type": "object", "properties": {"text": {"type": "string"}}},
    )
    message = ToolDefinition(
        name="send_text", description="Sends a text message.", parameters={"type": "object", "properties": {}}
    )
    grocer = ToolDefinition(
        name="order_groceries", description="Places a grocery delivery order.", parameters={"type": "object"}
    )
    text = {"type": "string", "description": "What to be reminded about."}
    assert values.model_param("text", text, reminder).kind == "task"
    assert values.model_param("text", {"type": "string"}, message).kind == "message"
    product = {"type": "string", "description": "Product name."}
    assert values.model_param("name", product, grocer).kind == "grocery"
    assert values.model_param("name", product, message).kind == "product"
    rng = random.Random(0)
    groceries = values.vocab()["groceries"]
    assert values.ValueSource().draw(values.model_param("name", product, grocer), rng) in groceries


def test_an_item_with_a_quantity_is_said_as_people_list_it():
    item = values.model_param(
        "items",
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "quantity": {"type": "integer"}},
                "required": ["name", "quantity"],
            },
        },
    )
    value = [{"name": "milk", "quantity": 2}, {"name": "eggs", "quantity": 12}]
    said = values.spoken(item, value, random.Random(0))
    assert said == "2 milk and 12 eggs"
    assert values.is_stated(item, value, f"can you order {said} for tomorrow")


@pytest.mark.parametrize(
    "name, description",
    [
        ("message", "The text of the SMS."),
        ("subject", "Subject line of the email."),
        ("body", "Body of the email."),
        ("title", "Title of the calendar event."),
        ("label", "Optional label shown when the alarm rings."),
        ("memo", "Note shown to the payee."),
    ],
)
def test_free_text_values_are_new_text_each_time_and_plausible(name, description):
    """A fixed list of 20 strings teaches the adapter 20 strings; templates with slots vary the text."""
    model = values.model_param(name, {"type": "string", "description": description})
    source = values.ValueSource()
    rng = random.Random(7)
    drawn = [source.string(model, rng) for _ in range(200)]
    assert all(isinstance(v, str) and v.strip() for v in drawn)
    assert not [v for v in drawn if values.plausible(model, v, "some_tool")]
    assert not [v for v in drawn if "{" in v or "}" in v]  # every slot filled
    assert len(set(drawn)) >= (25 if name == "label" else 60)
    if name == "message":
        assert any(v.endswith(("?", "!")) for v in drawn)  # people punctuate, and the call keeps it


def test_every_free_text_template_renders():
    from loraforge.generators import free_text

    rng = random.Random(0)
    for kind, options in free_text.templates().items():
        for template in options:
            free_text.templates()[kind] = [template]
            try:
                text = free_text.compose(kind, rng, values.vocab(), lambda: "Sam")
            finally:
                free_text.templates.cache_clear()
            assert text and "{" not in text, (kind, template)
