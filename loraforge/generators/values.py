"""The value model: for each parameter, what kind of thing it holds and which values a user would say.

A parameter's kind (a city, a person, money, a count, a time, an enumeration, ...) is read from its name,
its description, its type, format, enum, range and pattern, and from ranges and examples stated only in
the description ("between 1 and 10", "e.g. 'Berkeley, CA'"). Values then come from Faker (names,
companies, postcodes, user names), from loraforge's own lists of real places, foods, titles and messages
(`data/vocab.yaml`), or from the schema; only parameters that no list models are left to the teacher's
pools, and those values must pass `plausible` too.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import random
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from loraforge.generators import free_text, phrasing
from loraforge.tools.definition import ToolDefinition
from loraforge.tools.schema_sampling import sample_value

FAKER_LOCALES = ["en_US", "en_GB", "en_IN", "es_ES", "fr_FR", "de_DE", "it_IT", "pt_BR", "nl_NL"]


@functools.lru_cache(maxsize=1)
def vocab() -> dict[str, Any]:
    """The built-in value lists (package data, read once)."""
    text = resources.files("loraforge.generators").joinpath("data/vocab.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


# ---- kinds ---------------------------------------------------------------------------------------

# kind -> (words in the parameter name, phrases in its description). The name counts most; the tool's own
# name and description break ties between kinds such as a song title and an event title.
_STRING_CUES: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "email": ({"email", "mail", "emails"}, ("email address", "e-mail")),
    "phone": ({"phone", "mobile", "cell", "msisdn", "telephone", "tel"}, ("phone number",)),
    "url": ({"url", "link", "website", "uri", "homepage", "webpage"}, ("url", "web address")),
    "postal_code": ({"zip", "zipcode", "postcode", "postal"}, ("postal code", "zip code", "postcode")),
    "street": ({"street", "address1", "line1"}, ("street address",)),
    "address": ({"address"}, ("address",)),
    "country": ({"country", "nation"}, ("country",)),
    "state": ({"state", "province"}, ("state abbreviation", "us state", "province")),
    "airport": ({"airport", "iata"}, ("airport code", "iata")),
    "city": ({"city", "town"}, ("city",)),
    "location": (
        {"location", "place", "destination", "origin", "pickup", "dropoff", "where", "near", "area", "venue"},
        ("location", "place", "neighborhood", "neighbourhood"),
    ),
    "currency": ({"currency"}, ("currency code", "iso 4217", "currency")),
    "language": ({"language", "lang", "locale"}, ("language",)),
    "person": (
        {
            "name",
            "payee",
            "recipient",
            "contact",
            "attendee",
            "attendees",
            "person",
            "people",
            "guest",
            "guests",
            "passenger",
            "friend",
            "assignee",
            "owner",
            "invitee",
            "invitees",
            "participants",
            "participant",
            "driver",
            "patient",
            "customer",
            "who",
        },
        ("name of the person", "full name", "person's name", "names of"),
    ),
    "username": ({"username", "user", "handle", "login"}, ("user name", "username", "handle")),
    "company": ({"company", "organization", "organisation", "employer", "business", "brand"}, ("company",)),
    "ticker": ({"ticker", "symbol"}, ("ticker", "stock symbol")),
    "cuisine": ({"cuisine", "food"}, ("cuisine", "type of food")),
    "dish": ({"dish", "recipe", "meal"}, ("dish",)),
    "ingredient": ({"ingredient", "ingredients"}, ("ingredient",)),
    "product": ({"product", "item", "items", "goods"}, ("product", "item")),
    "artist": ({"artist", "band", "singer", "musician"}, ("artist", "band")),
    "song": ({"song", "track"}, ("song", "track")),
    "album": ({"album"}, ("album",)),
    "podcast": ({"podcast", "episode"}, ("podcast",)),
    "movie": ({"movie", "film"}, ("movie", "film")),
    "actor": ({"actor", "actress", "cast", "star"}, ("actor", "cast")),
    "director": ({"director"}, ("director",)),
    "show": ({"show", "series"}, ("tv show", "series")),
    "book": ({"book", "novel"}, ("book", "novel")),
    "author": ({"author", "writer"}, ("author",)),
    "genre": ({"genre", "style"}, ("genre",)),
    "title": ({"title", "summary", "event", "subject", "headline"}, ("title", "subject line")),
    "task": ({"task", "todo", "chore", "reminder"}, ("task", "to-do", "todo")),
    "message": (
        {"message", "text", "body", "content", "note", "comment", "caption", "reason", "description", "details"},
        ("message", "text of", "body of"),
    ),
    "memo": ({"memo", "purpose"}, ("memo", "note shown")),
    "query": ({"query", "search", "keyword", "keywords", "term", "terms", "topic", "q"}, ("search", "query")),
    "room": ({"room", "zone"}, ("room",)),
    "device": ({"device", "appliance", "light", "lights"}, ("device",)),
    "color": ({"color", "colour"}, ("color", "colour")),
    "sport": ({"sport"}, ("sport",)),
    "team": ({"team", "club"}, ("team",)),
    "app": ({"app", "application"}, ("app",)),
    "command": ({"command", "cmd", "shell"}, ("command", "shell")),
    "file": ({"file", "filename", "attachment", "document"}, ("file",)),
    "directory": ({"directory", "folder", "dir", "path"}, ("directory", "folder", "path")),
    "hotel": ({"hotel", "accommodation"}, ("hotel",)),
    "restaurant": ({"restaurant"}, ("restaurant",)),
    "job": ({"job", "occupation", "profession", "position"}, ("job", "occupation")),
    "tag": ({"tag", "tags"}, ("tag",)),
    "label": ({"label", "nickname"}, ("label",)),
    "category": ({"category", "categories"}, ("category",)),
    "symptom": ({"symptom", "symptoms", "condition"}, ("symptom",)),
    "car": ({"car", "vehicle", "ride"}, ("car type", "vehicle")),
    "identifier": (
        {"id", "code", "tracking", "confirmation", "reference", "invoice", "order", "booking", "ticket", "account"},
        ("identifier", "tracking number", "order number", "confirmation code"),
    ),
}

_NUMBER_CUES: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "money": (
        {"amount", "price", "cost", "budget", "total", "fee", "salary", "income", "payment", "balance", "bill"},
        ("dollars", "usd", "price", "amount of money", "in euros", "currency"),
    ),
    "percent": ({"percent", "percentage", "pct", "tip", "discount"}, ("percent", "percentage")),
    "level": ({"volume", "brightness", "level", "intensity"}, ("volume", "brightness")),
    "temperature": ({"temperature", "temp", "degrees"}, ("temperature", "degrees")),
    "count": (
        {
            "people",
            "guests",
            "passengers",
            "party",
            "adults",
            "children",
            "kids",
            "tickets",
            "seats",
            "quantity",
            "count",
            "num",
            "servings",
            "copies",
            "rooms",
            "size",
            "players",
        },
        ("number of people", "number of", "how many"),
    ),
    "minutes": ({"minutes", "mins", "min", "duration"}, ("minutes",)),
    "hours": ({"hours", "hrs"}, ("hours",)),
    "seconds": ({"seconds", "secs"}, ("seconds",)),
    "days": ({"days", "day"}, ("days",)),
    "nights": ({"nights"}, ("nights",)),
    "weeks": ({"weeks"}, ("weeks",)),
    "weight": ({"weight", "kg", "kilograms", "lbs", "pounds"}, ("kilograms", "kg", "pounds", "weight")),
    "distance": ({"distance", "radius", "km", "miles", "meters"}, ("kilometers", "miles", "radius", "distance")),
    "year": ({"year"}, ("year",)),
    "age": ({"age"}, ("age",)),
    "rating": ({"rating", "stars", "score"}, ("rating", "stars")),
    "limit": ({"limit", "results", "top", "max_results", "page_size"}, ("maximum number of results", "results")),
    "latitude": ({"latitude", "lat"}, ("latitude",)),
    "longitude": ({"longitude", "lon", "lng"}, ("longitude",)),
    "calories": ({"calories", "kcal", "calorie"}, ("calories",)),
    "steps": ({"steps"}, ("steps",)),
}

# Typical ranges (low, high) and the unit a person says, per numeric kind.
_NUMBER_DEFAULTS: dict[str, tuple[float, float, str]] = {
    "money": (5, 2500, "$"),
    "percent": (5, 30, "%"),
    "level": (0, 100, ""),
    "temperature": (16, 30, "degrees"),
    "count": (1, 8, ""),
    "minutes": (5, 180, "minutes"),
    "hours": (1, 12, "hours"),
    "seconds": (10, 300, "seconds"),
    "days": (1, 14, "days"),
    "nights": (1, 10, "nights"),
    "weeks": (1, 8, "weeks"),
    "weight": (0.5, 30, "kg"),
    "distance": (1, 50, "km"),
    "year": (1960, 2026, ""),
    "age": (18, 80, ""),
    "rating": (1, 5, "stars"),
    "limit": (3, 20, ""),
    "latitude": (-60, 70, ""),
    "longitude": (-170, 170, ""),
    "calories": (100, 900, "calories"),
    "steps": (1000, 15000, "steps"),
    "number": (1, 100, ""),
}

_NICE = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 18, 20, 24, 25, 30, 35, 40, 45, 50, 60, 75, 80, 90, 100, 120, 150]
_NICE += [200, 250, 300, 400, 500, 600, 750, 800, 1000, 1200, 1500, 2000, 2500, 3000, 5000, 10000]

_PLACEHOLDERS = {
    "example",
    "sample",
    "string",
    "value",
    "test",
    "foo",
    "bar",
    "baz",
    "lorem",
    "ipsum",
    "placeholder",
    "null",
    "none",
    "undefined",
    "xxx",
    "todo",
    "tbd",
    "param",
    "parameter",
    "argument",
}


@dataclass
class ParamModel:
    """What one parameter holds: its kind, bounds and unit, and models of its items or fields."""

    name: str
    kind: str
    schema: dict[str, Any]
    description: str = ""
    low: float | None = None
    high: float | None = None
    unit: str = ""
    typical: tuple[float, float] | None = None  # the range people usually say, inside low..high
    examples: list[Any] = field(default_factory=list)
    items: ParamModel | None = None
    fields: dict[str, ParamModel] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    @property
    def is_enum(self) -> bool:
        return bool(self.schema.get("enum"))

    def within(self, value: float) -> bool:
        """Inside the schema's bounds (exclusive ones too) and any range stated in the description."""
        if self.low is not None and (value < self.low or value == self.low and "exclusiveMinimum" in self.schema):
            return False
        if self.high is not None and (value > self.high or value == self.high and "exclusiveMaximum" in self.schema):
            return False
        return True


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _best_kind(
    cues: dict[str, tuple[set[str], tuple[str, ...]]], name_words: list[str], description: str, context: set[str]
) -> str | None:
    kind, _ = _scored_kind(cues, name_words, description, context)
    return kind


def _scored_kind(
    cues: dict[str, tuple[set[str], tuple[str, ...]]], name_words: list[str], description: str, context: set[str]
) -> tuple[str | None, float]:
    """The best-cued kind and its score: 3 or more means the parameter's name says it, less only the
    description or the tool's context."""
    scores: dict[str, float] = {}
    lowered = description.lower()
    for kind, (words, phrases) in cues.items():
        score = 0.0
        for position, word in enumerate(reversed(name_words)):
            if word in words:
                score += 4.0 if position == 0 else 3.0  # the head word (last) weighs most: "event_title"
        score += sum(1.5 for phrase in phrases if re.search(rf"\b{re.escape(phrase)}\b", lowered))
        score += 0.5 * len(words & context)
        if score >= 1.5:
            scores[kind] = score
    if not scores:
        return None, 0.0
    best = max(scores, key=lambda k: scores[k])
    return best, scores[best]


# Description phrases that define a value's format whatever the parameter is called: an "origin" that is
# an "IATA code of the departure airport" is an airport code, not a place.
_DEFINING_PHRASES = {
    "iata": "airport",
    "airport code": "airport",
    "iso 4217": "currency",
    "currency code": "currency",
    "ticker symbol": "ticker",
    "stock symbol": "ticker",
    "email address": "email",
    "e-mail address": "email",
    "phone number": "phone",
}


_RANGE_PATTERNS = [
    r"between\s+(-?\d+(?:\.\d+)?)\s+and\s+(-?\d+(?:\.\d+)?)",
    r"from\s+(-?\d+(?:\.\d+)?)\s+to\s+(-?\d+(?:\.\d+)?)",
    r"(-?\d+(?:\.\d+)?)\s*(?:-|–|—|to)\s*(-?\d+(?:\.\d+)?)",
]


def stated_range(description: str) -> tuple[float | None, float | None]:
    """Bounds written only in a description: "between 1 and 10", "(15 to 480)", "0-100", "up to 30"."""
    text = description.lower()
    for pattern in _RANGE_PATTERNS:
        match = re.search(pattern, text)
        if match:
            low, high = float(match.group(1)), float(match.group(2))
            if low < high:
                return low, high
    match = re.search(r"(?:up to|at most|maximum(?: of)?|max\.?|no more than|<=)\s*(\d+(?:\.\d+)?)", text)
    upper = float(match.group(1)) if match else None
    match = re.search(r"(?:at least|minimum(?: of)?|min\.?|no less than|>=)\s*(\d+(?:\.\d+)?)", text)
    lower = float(match.group(1)) if match else None
    if "percent" in text or "percentage" in text:
        lower, upper = lower if lower is not None else 0.0, upper if upper is not None else 100.0
    return lower, upper


def stated_examples(description: str) -> list[str]:
    """Example values quoted in a description: "e.g. 'Berkeley, CA' or 'Lyon, France'" -> both."""
    match = re.search(r"(?:e\.g\.|eg\.|for example|such as|like)[:,]?\s*(.+)", description, re.IGNORECASE)
    if not match:
        return []
    quoted = re.findall(r"'([^']+)'|\"([^\"]+)\"", match.group(1))
    return [a or b for a, b in quoted]


def _unit_of(kind: str, name_words: list[str], description: str) -> str:
    text = " ".join(name_words) + " " + description.lower()
    for unit, cues in (
        ("kg", ("kg", "kilogram")),
        ("lb", ("lbs", "pounds")),
        ("km", ("km", "kilomet")),
        ("miles", ("miles",)),
        ("minutes", ("minute",)),
        ("hours", ("hour",)),
        ("seconds", ("second",)),
        ("nights", ("night",)),
        ("days", ("days",)),
        ("€", ("euro",)),
        ("£", ("pound sterling", "gbp")),
        ("$", ("dollar", "usd")),
        ("%", ("percent",)),
    ):
        if any(cue in text for cue in cues):
            return unit
    return _NUMBER_DEFAULTS.get(kind, (0, 0, ""))[2]


def _count_unit(name_words: list[str]) -> str:
    """What a count counts, as people say it: party_size -> people, num_tickets -> tickets."""
    for word in reversed(name_words):
        if word in ("people", "guests", "party", "passengers", "adults", "players", "size", "attendees"):
            return "people"
        if word in ("tickets", "seats", "rooms", "servings", "copies", "kids", "children", "nights"):
            return word
    return ""


def model_param(name: str, schema: dict[str, Any], tool: ToolDefinition | None = None, depth: int = 0) -> ParamModel:
    """The value model of one parameter (recursively for array items and object fields)."""
    schema = schema if isinstance(schema, dict) else {}
    description = str(schema.get("description") or "")
    name_words = phrasing.split_name(name)
    context = _words(f"{tool.name} {tool.description}") if tool else set()
    context |= {w for w in phrasing.split_name(tool.name)} if tool else set()
    kind_of = schema.get("type")
    if isinstance(kind_of, list):
        kind_of = next((k for k in kind_of if k != "null"), None)
    examples = list(schema.get("examples") or []) + stated_examples(description)
    base: dict[str, Any] = {"name": name, "schema": schema, "description": description, "examples": examples}
    if "const" in schema:
        return ParamModel(kind="const", **base)
    if schema.get("enum"):
        return ParamModel(kind="enum", **base)
    if kind_of == "array" and depth < 4:
        item_schema: dict[str, Any] = schema["items"] if isinstance(schema.get("items"), dict) else {}
        item_desc = item_schema.get("description") or description
        items = model_param(name, {**item_schema, "description": item_desc}, tool, depth + 1)
        return ParamModel(kind="array", items=items, **base)
    if (kind_of == "object" or "properties" in schema) and depth < 4:
        props = schema.get("properties") or {}
        fields = {key: model_param(key, sub, tool, depth + 1) for key, sub in props.items()}
        return ParamModel(kind="object", fields=fields, required=tuple(schema.get("required") or ()), **base)
    if kind_of == "boolean":
        return ParamModel(kind="boolean", **base)
    if kind_of in ("integer", "number"):
        number_kind = _best_kind(_NUMBER_CUES, name_words, description, context) or "number"
        low, high = stated_range(description)
        d_low, d_high, _ = _NUMBER_DEFAULTS[number_kind]
        for key in ("minimum", "exclusiveMinimum"):
            if isinstance(schema.get(key), (int, float)):
                low = max(low, schema[key]) if low is not None else schema[key]
        for key in ("maximum", "exclusiveMaximum"):
            if isinstance(schema.get(key), (int, float)):
                high = min(high, schema[key]) if high is not None else schema[key]
        unit = _count_unit(name_words) if number_kind == "count" else _unit_of(number_kind, name_words, description)
        typical = (d_low if low is None else max(low, d_low), d_high if high is None else min(high, d_high))
        if typical[0] >= typical[1]:  # the schema's range and the kind's usual one do not meet
            typical = (low if low is not None else d_low, high if high is not None else max(d_high, (low or 0) + 10))
        return ParamModel(kind=number_kind, low=low, high=high, unit=unit, typical=typical, **base)
    fmt = schema.get("format")
    lowered = description.lower()
    if fmt == "date" or "yyyy-mm-dd" in lowered:
        return ParamModel(kind="date", **base)
    if fmt == "date-time" or "iso 8601" in lowered and "time" in name_words:
        return ParamModel(kind="datetime", **base)
    if fmt == "time" or "hh:mm" in lowered:
        return ParamModel(kind="time", **base)
    if fmt == "email":
        return ParamModel(kind="email", **base)
    if fmt in ("uri", "url"):
        return ParamModel(kind="url", **base)
    kind, score = _scored_kind(_STRING_CUES, name_words, description, context)
    if kind == "person" and "email" in lowered:
        kind = "email"
    if name_words and name_words[-1] in ("name", "title", "type"):  # "Product name.": what is it a name of?
        said, _ = _scored_kind(_STRING_CUES, [w for w in _words(description) if w not in name_words], "", set())
        if said is not None and said not in ("person", "title", "message"):
            kind, score = said, 3.0
    defined = next((k for phrase, k in _DEFINING_PHRASES.items() if phrase in lowered), None)
    if defined is not None and kind not in ("email", "phone") or defined in ("email", "phone") and kind == "person":
        kind, score = defined, 4.0
    generic = kind == "message" and bool(name_words) and name_words[-1] in _GENERIC_TEXT
    if generic and (_words(lowered) | context) & _TASK_CUES:
        kind = "task"  # a reminder's "text" is what to do, not a chat message
    if kind == "product" and context & _GROCERY_CUES:
        kind = "grocery"
    if score < 3 and examples and kind not in ("email", "phone", "url"):
        kind = "free"  # only a description word hints at a kind, and the description gives examples: follow them
    if kind in ("date", None) and name_words and name_words[-1] == "date":
        return ParamModel(kind="date", **base)
    if kind is None and name_words and name_words[-1] == "time":
        return ParamModel(kind="time", **base)
    return ParamModel(kind=kind or "free", **base)


# A generic text parameter of a reminder or to-do tool holds a task ("call the plumber"), not a chat message.
_GENERIC_TEXT = {"text", "content", "body", "note", "description", "details"}
_TASK_CUES = {"remind", "reminder", "reminders", "reminded", "todo", "task", "tasks", "chore"}
_GROCERY_CUES = {"grocery", "groceries", "supermarket", "pantry"}


def kinds_of(model: ParamModel) -> list[str]:
    """A parameter's kind with its items' or fields' kinds: what shots are matched on."""
    if model.items is not None:
        return ["array"] + kinds_of(model.items)
    if model.fields:
        return ["object"] + [k for sub in model.fields.values() for k in kinds_of(sub)]
    return [model.kind]


def model_tool(tool: ToolDefinition) -> dict[str, ParamModel]:
    """The value model of every top-level parameter of a tool."""
    return {name: model_param(name, schema, tool) for name, schema in tool.properties.items()}


# ---- drawing values ------------------------------------------------------------------------------


class ValueSource:
    """Draws realistic values for a parameter model; deterministic for a given random generator."""

    def __init__(self) -> None:
        from faker import Faker  # heavy import, needed only once generation starts

        self._faker = Faker(FAKER_LOCALES)
        self._us_faker = Faker("en_US")
        self._gb_faker = Faker("en_GB")

    def _fake(self, rng: random.Random, locale: str = "") -> Any:
        faker = {"us": self._us_faker, "gb": self._gb_faker}.get(locale, self._faker)
        faker.seed_instance(rng.randrange(2**31))
        return faker

    def _free_text(self, kind: str, rng: random.Random) -> str:
        def first() -> str:
            return _ascii(self._fake(rng, rng.choice(["us", "gb", ""])).first_name())

        return free_text.compose(kind, rng, vocab(), first) or ""

    def draw(self, model: ParamModel, rng: random.Random, optional_rate: float = 0.5) -> Any:
        kind = model.kind
        if kind == "const":
            return model.schema["const"]
        if kind == "enum":
            return rng.choice(model.schema["enum"])
        if kind == "boolean":
            return rng.random() < 0.6
        if kind == "array":
            return self._array(model, rng)
        if kind == "object":
            out = {}
            for key, sub in model.fields.items():
                if key in model.required or rng.random() < optional_rate:
                    out[key] = self.draw(sub, rng, optional_rate)
            return out
        if model.schema.get("type") in ("integer", "number"):
            return self.number(model, rng)
        value = self.string(model, rng)
        limit = model.schema.get("maxLength")
        return value[:limit] if isinstance(limit, int) and limit > 0 else value

    def _array(self, model: ParamModel, rng: random.Random) -> list[Any]:
        assert model.items is not None
        low = int(model.schema.get("minItems", 1) or 1)
        high = int(model.schema.get("maxItems", max(low, 3)) or max(low, 3))
        high = max(low, min(high, low + 3, 6))
        enum = model.items.schema.get("enum")
        if enum and set(map(str, enum)) >= {"mon", "tue", "wed", "thu", "fri"} or enum and "monday" in enum:
            return _weekday_pattern(list(enum), rng, low, high)
        count = rng.randint(low, high) if low < high else low
        values: list[Any] = []
        for _ in range(count * 4):
            if len(values) >= count:
                break
            value = self.draw(model.items, rng)
            if value not in values:
                values.append(value)
        if enum:  # several choices of one enumeration are listed in its order
            values.sort(key=list(enum).index)
        return values

    def number(self, model: ParamModel, rng: random.Random, scale: str = "") -> int | float:
        """A number people say (25, 40, 2500, sometimes 18.50) in the parameter's usual range; `scale` is a
        temperature scale chosen for another parameter of the same call (C or F)."""
        integer = model.schema.get("type") == "integer"
        low, high = model.typical or (0, 100)
        if model.kind in ("latitude", "longitude"):
            return round(rng.uniform(low, high), 4)
        if model.kind == "year":
            return rng.randint(int(low), int(high))
        if model.kind == "temperature":
            hot = scale.lower().startswith("f") or "fahrenheit" in model.description.lower()
            low, high = (60, 80) if hot else (17, 25)
            if not integer and not hot and rng.random() < 0.3:
                return rng.randint(low, high - 1) + 0.5
            return rng.randint(low, high)
        nice = [n for n in _NICE if low <= n <= high and model.within(n)]
        if not integer and model.kind in ("money", "weight", "distance") and nice and rng.random() < 0.3:
            whole = rng.choice([n for n in nice if n < high] or nice)
            value = whole + (rng.choice([0.5, 0.25, 0.99, 0.75]) if model.kind == "money" else 0.5)
            if model.within(value) and value <= high:
                return float(value)
        if nice and (rng.random() < 0.8 or model.kind not in ("count", "level", "number", "age")):
            return rng.choice(nice)
        value = rng.randint(int(math.ceil(low)), int(math.floor(high))) if math.ceil(low) <= high else low
        return value if model.within(value) else (nice[0] if nice else value)

    def string(self, model: ParamModel, rng: random.Random) -> str:
        v = vocab()
        kind = model.kind
        examples = [str(e) for e in model.examples if isinstance(e, (str, int, float))]
        if examples and kind not in ("email", "phone", "date", "time", "datetime") and rng.random() < 0.15:
            return rng.choice(examples)
        if kind == "date":
            return (dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(365))).isoformat()
        if kind == "datetime":
            day = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(365))
            return f"{day.isoformat()}T{rng.randrange(7, 22):02d}:{rng.choice([0, 0, 15, 30, 45]):02d}:00"
        if kind == "time":
            return f"{rng.randrange(5, 23):02d}:{rng.choice([0, 0, 0, 15, 30, 30, 45]):02d}"
        if kind == "email":
            first, last = self._fake(rng, "us").first_name(), self._fake(rng, "us").last_name()
            local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randrange(10, 99)}", first])
            return f"{_ascii(local).lower()}@{rng.choice(v['email_domains'])}"
        if kind == "phone":
            return _phone(model, rng)
        if kind == "url":
            site = _ascii(rng.choice(v["companies"])).lower()
            return f"https://www.{site}.com/{rng.choice(['', 'about', 'store', 'help', 'news'])}".rstrip("/")
        if kind == "postal_code":
            return self._fake(rng, rng.choice(["us", "gb", "us"])).postcode()
        if kind == "street":
            return _street(rng)
        if kind == "address":
            city = rng.choice(v["us_cities"])
            return f"{_street(rng)}, {city[0]}, {city[1]}"
        if kind == "country":
            return rng.choice(v["countries"])
        if kind == "state":
            state = rng.choice(v["us_states"])
            return state[1] if "abbreviation" in model.description.lower() else state[0]
        if kind == "airport":
            return rng.choice(v["airports"])[0]
        if kind in ("city", "location"):
            return _place(model, rng)
        if kind == "currency":
            return rng.choice(v["currencies"])
        if kind == "language":
            language = rng.choice(v["languages"])
            return v["language_codes"][language] if "code" in model.description.lower() else language
        if kind == "person":
            first_only = "first name" in model.description.lower() or model.name.lower().endswith("s")
            faker = self._fake(rng, rng.choice(["us", "gb", ""]))
            return _ascii(faker.first_name() if first_only and rng.random() < 0.7 else faker.name())
        if kind == "username":
            return _ascii(self._fake(rng, "us").user_name())
        if kind == "company":
            return rng.choice(v["companies"]) if rng.random() < 0.5 else _ascii(self._fake(rng, "us").company())
        if kind == "ticker":
            return rng.choice(v["tickers"])[0]
        if kind == "identifier":
            return _identifier(model, rng)
        if kind == "genre":
            context = f"{model.description} {model.name}".lower()
            key = "music_genres" if "music" in context or "song" in context else "movie_genres"
            key = "book_genres" if "book" in context else key
            return rng.choice(v[key])
        if kind == "title":
            context = model.description.lower()
            for word, key in (("movie", "movies"), ("film", "movies"), ("song", "songs"), ("book", "books")):
                if word in context:
                    return str(rng.choice(v[key]))
            key = "email_subject" if "subject" in model.name.lower() or "subject" in context else "event_title"
            return self._free_text(key, rng)
        table = {
            "cuisine": "cuisines",
            "dish": "dishes",
            "ingredient": "ingredients",
            "product": "products",
            "grocery": "groceries",
            "artist": "artists",
            "song": "songs",
            "album": "albums",
            "podcast": "podcasts",
            "movie": "movies",
            "actor": "actors",
            "director": "directors",
            "show": "tv_shows",
            "book": "books",
            "author": "authors",
            "task": "tasks",
            "message": "messages",
            "memo": "memos",
            "query": "search_queries",
            "room": "rooms",
            "device": "devices",
            "color": "colors",
            "sport": "sports",
            "team": "teams",
            "app": "apps",
            "command": "commands",
            "file": "file_names",
            "directory": "directories",
            "hotel": "hotels",
            "restaurant": "restaurants",
            "job": "jobs",
            "tag": "tags",
            "label": "labels",
            "category": "categories",
            "symptom": "symptoms",
            "car": "car_types",
        }
        if kind == "message":
            return self._free_text("email_body" if model.name.lower() in ("body", "email_body") else "message", rng)
        if kind in ("label", "memo"):
            return self._free_text(kind, rng)
        if kind in table:
            return str(rng.choice(v[table[kind]]))
        pattern = model.schema.get("pattern")
        if pattern:
            return _from_pattern(pattern, rng) or sample_value(model.schema, rng, model.name)
        return sample_value(model.schema, rng, model.name)


def harmonise(
    models: dict[str, ParamModel], arguments: dict[str, Any], source: ValueSource, rng: random.Random
) -> None:
    """Values that depend on each other agree: a temperature fits the scale chosen beside it (72 F, 21 C)."""
    scale = ""
    for name, value in arguments.items():
        if models[name].is_enum and str(value).lower() in ("c", "f", "celsius", "fahrenheit"):
            scale = str(value)
    if not scale:
        return
    for name, model in models.items():
        if name in arguments and model.kind == "temperature" and model.low is None and model.high is None:
            arguments[name] = source.number(model, rng, scale=scale)


def _ascii(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().strip()


def _street(rng: random.Random) -> str:
    v = vocab()
    return f"{rng.randint(1, 450)} {rng.choice(v['street_names'])} {rng.choice(v['street_types'])}"


def _place(model: ParamModel, rng: random.Random) -> str:
    """A city, with the state or country when the description's examples carry one; or a landmark."""
    v = vocab()
    examples = " ".join(str(e) for e in model.examples)
    with_state = bool(re.search(r", [A-Z]{2}\b", examples))
    with_country = bool(re.search(r", [A-Z][a-z]+", examples))
    text = f"{model.name} {model.description}".lower()
    if model.kind == "location" and re.search(r"address|place|landmark|origin|destination|pickup|dropoff", text):
        roll = rng.random()
        if roll < 0.35:
            return str(rng.choice(v["places"]))
        if roll < 0.5:
            return _street(rng)
    if model.kind == "location" and "neighborhood" in text and rng.random() < 0.5:
        return str(rng.choice(v["neighborhoods"]))
    if rng.random() < 0.45:
        city, state, _ = rng.choice(v["us_cities"])
        return f"{city}, {state}" if with_state and rng.random() < 0.6 else city
    city, country = rng.choice(v["world_cities"])
    return f"{city}, {country}" if (with_country or with_state) and rng.random() < 0.5 else city


def _phone(model: ParamModel, rng: random.Random) -> str:
    text = model.description.lower() + " " + str(model.schema.get("pattern", ""))
    if "international" in text or "+" in text or "e.164" in text:
        country, digits = rng.choice([("1", 10), ("44", 10), ("49", 11), ("33", 9), ("61", 9), ("91", 10)])
        first = str(rng.randint(2, 9))
        return "+" + country + first + "".join(str(rng.randrange(10)) for _ in range(digits - 1))
    area = rng.choice(["415", "212", "312", "617", "206", "303", "512", "305"])
    return f"{area}-555-{rng.randrange(100, 9999):04d}"


def _identifier(model: ParamModel, rng: random.Random) -> str:
    pattern = model.schema.get("pattern")
    if pattern:
        made = _from_pattern(pattern, rng)
        if made:
            return made
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    shape = rng.choice(["L#####", "LL-####", "######", "LLL###", "#########"])
    return "".join(rng.choice(letters) if c == "L" else str(rng.randrange(10)) if c == "#" else c for c in shape)


def _from_pattern(pattern: str, rng: random.Random) -> str | None:
    """A string for simple patterns (character classes with counts); None for anything harder."""
    body = pattern.removeprefix("^").removesuffix("$")
    out = []
    for match in re.finditer(r"(\[[^\]]+\]|\\d|[A-Za-z0-9+\-])(\{(\d+)(?:,(\d+))?\}|\+|\*|\?)?", body):
        atom, _, n, m = match.groups()
        low = int(n) if n else 1
        high = int(m) if m else low
        if match.group(2) in ("+", "*"):
            low, high = (1 if match.group(2) == "+" else 0), 4
        if match.group(2) == "?":
            low, high = 0, 1
        if atom == r"\d":
            chars = "0123456789"
        elif atom.startswith("["):
            chars = _class_chars(atom[1:-1])
        else:
            chars = atom
        out.append("".join(rng.choice(chars) for _ in range(rng.randint(low, high))))
    made = "".join(out)
    try:
        return made if made and re.fullmatch(pattern.removeprefix("^").removesuffix("$"), made) else None
    except re.error:
        return None


def _class_chars(spec: str) -> str:
    chars = ""
    for match in re.finditer(r"(.)-(.)|\\d|(.)", spec):
        if match.group(0) == r"\d":
            chars += "0123456789"
        elif match.group(1):
            chars += "".join(chr(c) for c in range(ord(match.group(1)), ord(match.group(2)) + 1))
        else:
            chars += match.group(3)
    return chars or "A"


def _weekday_pattern(days: list[Any], rng: random.Random, low: int, high: int) -> list[Any]:
    """Days people repeat things on: weekdays, weekends, every day, or a few days in week order."""
    week = days[:7]
    roll = rng.random()
    if roll < 0.25 and len(week) >= 5 and high >= 5:
        return week[:5]
    if roll < 0.4 and len(week) >= 7 and low <= 2 <= high:
        return week[5:7]
    if roll < 0.5 and len(week) >= 7 and high >= 7:
        return week
    count = max(low, min(high, rng.randint(1, 3)))
    return sorted(rng.sample(week, k=min(count, len(week))), key=week.index)


# ---- how a value is shown to the teacher, and accepted in a request -------------------------------


def forms(model: ParamModel, value: Any) -> list[str]:
    """Accepted surface forms of a scalar value of this parameter."""
    if model.kind == "enum":
        phrases = phrasing.enum_phrases(value, model.description)
        raw = str(value)
        if len(phrases) > 1 and phrasing.is_code(raw) and raw.islower():
            phrases = phrases[:-1]  # "sun", "sat": in a sentence these are words, not days
        return phrases
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return phrasing.number_forms(value)
    return phrasing.value_forms(value, model.description)


def spoken(model: ParamModel, value: Any, rng: random.Random) -> str:
    """The value as a person would say it: `18:00` -> 6pm, 50 -> $50, `gluten_free` -> gluten-free,
    a list -> "a, b and c". This is what the teacher is shown, so it writes what people write."""
    if isinstance(value, list) and model.items is not None:
        parts = [spoken(model.items, item, rng) for item in value]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if isinstance(value, dict):
        counts = [k for k, v in value.items() if model.fields.get(k, model).kind == "count" and isinstance(v, int)]
        if len(counts) == 1 and len(value) == 2:  # {"name": "milk", "quantity": 2} -> "2 milk"
            other = next(k for k in value if k != counts[0])
            return f"{value[counts[0]]} {spoken(model.fields.get(other, model), value[other], rng)}"
        return ", ".join(spoken(model.fields.get(k, model), v, rng) for k, v in value.items())
    if isinstance(value, bool):
        label = " ".join(phrasing.split_name(model.name))
        return label if value else f"no {label}"
    if isinstance(value, (int, float)):
        number = phrasing.number_forms(value)
        text = number[1] if len(number) > 1 and "," in number[1] and rng.random() < 0.5 else number[0]
        if model.kind == "money" or model.unit in ("$", "€", "£"):
            symbol = model.unit if model.unit in ("$", "€", "£") else "$"
            if isinstance(value, float) and not float(value).is_integer():
                text = f"{value:.2f}"
            return f"{symbol}{text}" if rng.random() < 0.7 else f"{text} {_money_word(symbol)}"
        if model.unit == "%":
            return f"{text}%" if rng.random() < 0.6 else f"{text} percent"
        if model.unit and model.kind not in ("temperature", "level", "number", "year", "age", "limit"):
            unit = model.unit
            if value == 1 and unit.endswith("s"):
                unit = unit[:-1]
            if value == 1 and unit == "people":
                unit = "person"
            return f"{text} {unit}" if unit not in ("kg", "km") or rng.random() < 0.5 else f"{text}{unit}"
        return text
    choices = forms(model, value)
    if model.kind == "enum":
        words = choices[:-1] or choices  # the raw value is last
        roll = rng.random()
        if roll < 0.6:
            return words[0]
        raw = str(value)
        return rng.choice(words) if roll < 0.9 or not phrasing.is_code(raw) or raw.islower() else raw
    if model.kind in ("date", "datetime"):
        return _spoken_moment(value, rng)
    if model.kind == "time":
        return rng.choice(choices[:4]) if rng.random() < 0.7 else value
    return str(value)


def _spoken_moment(value: str, rng: random.Random) -> str:
    date_text = rng.choice(phrasing.date_forms(value[:10])[:9]) if rng.random() < 0.85 else value[:10]
    if len(value) > 10:
        time_text = rng.choice(phrasing.time_forms(value[11:16])[:3])
        return f"{date_text} at {time_text}"
    return date_text


def _money_word(symbol: str) -> str:
    return {"$": "dollars", "€": "euros", "£": "pounds"}.get(symbol, "dollars")


def find(model: ParamModel, value: Any, text: str) -> list[tuple[int, int]]:
    """Spans of `text` that state this value; [] when any part of it is missing."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, list):
        spans: list[tuple[int, int]] = []
        for item in value:
            found = find(model.items or model, item, text)
            if not found:
                return []
            spans += found
        return spans
    if isinstance(value, dict):
        spans = []
        for key, item in value.items():
            found = find(model.fields.get(key, model), item, text)
            if not found:
                return []
            spans += found
        return spans
    if isinstance(value, str) and model.kind in ("datetime",):
        return phrasing.find_value(value, text)
    if model.kind == "time" and isinstance(value, str):
        span = phrasing.find_time(value, text)
        return [span] if span else []
    span = phrasing.find_form(forms(model, value), text) if not isinstance(value, (int, float)) else None
    if span is None and isinstance(value, (int, float)):
        return phrasing.find_value(value, text)
    return [span] if span else []


def stated_part(model: ParamModel, value: Any, text: str) -> Any:
    """The part of a value that `text` states: a list keeps its stated items, an object its stated fields
    (all of its required ones, or nothing); None when nothing usable is stated."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        kept = [item for item in value if find(model.items or model, item, text)]
        return kept or None
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            part = stated_part(model.fields.get(key, model), item, text)
            if part is not None:
                out[key] = part
            elif key in model.required:
                return None
        return out or None
    return value if find(model, value, text) else None


def is_stated(model: ParamModel, value: Any, text: str) -> bool:
    if isinstance(value, bool) or (isinstance(value, list) and not value):
        return True
    return bool(find(model, value, text))


# ---- plausibility ----------------------------------------------------------------------------------


def plausible(model: ParamModel, value: Any, tool_name: str = "") -> str | None:
    """Why a value is not one a user would give for this parameter, or None."""
    if model.kind == "array":
        if not isinstance(value, list):
            return f"{model.name}: expected a list"
        for item in value:
            problem = plausible(model.items or model, item, tool_name)
            if problem:
                return problem
        return None
    if model.kind == "object":
        if not isinstance(value, dict):
            return f"{model.name}: expected an object"
        for key, item in value.items():
            problem = plausible(model.fields.get(key, model), item, tool_name)
            if problem:
                return problem
        return None
    if isinstance(value, bool) or model.kind in ("enum", "const", "boolean"):
        return None
    if isinstance(value, (int, float)):
        if model.low is not None and value < model.low:
            return f"{model.name}: {value} is below {model.low:g}"
        if model.high is not None and value > model.high:
            return f"{model.name}: {value} is above {model.high:g}"
        return None
    if not isinstance(value, str):
        return f"{model.name}: unexpected value {value!r}"
    text = value.strip()
    words = text.split()
    if not text or len(text) > 120:
        return f"{model.name}: empty or too long"
    lowered = set(re.findall(r"[a-z]+", text.lower()))
    if lowered & _PLACEHOLDERS:
        return f"{model.name}: placeholder word in {value!r}"
    if tool_name and (tool_name.lower() in text.lower() or "_" in text and model.kind not in _CODE_KINDS):
        return f"{model.name}: names a tool or an identifier: {value!r}"
    label = " ".join(phrasing.split_name(model.name))
    if model.kind == "free" and len(label) > 2 and re.search(rf"\b{re.escape(label)}\b", text.lower()):
        return f"{model.name}: the value repeats the parameter's name: {value!r}"
    if re.search(r"[{}\[\]<>=|]", text) and model.kind not in _CODE_KINDS:
        return f"{model.name}: markup in {value!r}"
    if model.kind in ("person", "city", "country", "language", "artist", "actor", "director", "author"):
        if re.search(r"\d", text) or len(words) > 5:
            return f"{model.name}: {value!r} does not look like a {model.kind}"
    if model.kind == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", text):
        return f"{model.name}: {value!r} is not an email address"
    if model.kind == "phone" and len(re.sub(r"\D", "", text)) < 7:
        return f"{model.name}: {value!r} is not a phone number"
    if model.kind == "time" and not re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text):
        return f"{model.name}: {value!r} is not a time"
    if model.kind == "free" and (len(words) > 8 or not re.search(r"[A-Za-z]", text)):
        return f"{model.name}: {value!r} is not a short phrase"
    limit = model.schema.get("maxLength")
    if isinstance(limit, int) and len(text) > limit:
        return f"{model.name}: longer than {limit} characters"
    return None


_CODE_KINDS = {"command", "file", "directory", "url", "identifier", "username", "email"}


def needs_pool(model: ParamModel) -> bool:
    """Parameters whose values only the teacher can propose (no list, no library, no schema rule)."""
    return model.kind == "free" and not model.schema.get("pattern")  # stated examples seed the pool
