"""Requests composed from a call, without the teacher: what is wanted, then each value in its frame.

Shown a list of details, the 135M teacher mostly copies the list ("money, Brenda Hernandez, $20, pizza
night"), and an adapter trained on such rows learns lists, not the way people ask. A composed request
starts with what the user wants, said as people say it ("send money", "what's the weather forecast"),
then gives each value with the word that tells its role: "to Brenda Hernandez", "$20", "for pizza night",
"in Denver", "at 6pm", "on March 3rd", "every monday and friday". The frames depend on the kind of value
(`values.ParamModel.kind`) and the parameter's name, never on a particular tool, so they serve tools that
loraforge has never seen. A composed request goes through the same verification as a teacher's.
"""

from __future__ import annotations

import random
from typing import Any

from loraforge.generators import realism, values
from loraforge.generators.bank import role_prefix
from loraforge.generators.phrasing import GENERIC_NAME_VERBS, split_name

# Frames per kind of value; {s} is the value as spoken (6pm, $20, March 3rd), {v} the exact text.
_FRAMES: dict[str, tuple[str, ...]] = {
    "place": ("in {s}", "in {s}", "for {s}", "{s}"),
    "recipient": ("to {s}", "to {s}", "{s}"),
    "with": ("with {s}", "and invite {s}"),
    "date": ("on {s}", "on {s}", "for {s}", "{s}"),
    "time": ("at {s}", "at {s}", "for {s}"),
    "moment": ("on {s}", "for {s}"),
    "duration": ("for {s}", "lasting {s}"),
    "limit": ("under {s}", "in {s} or less", "max {s}", "no more than {s}"),
    "price_limit": ("under {s}", "max {s}", "no more than {s}", "{s} or less"),
    "span": ("for the next {s}", "next {s}", "for {s}", "{s}"),
    "count": ("for {s}", "{s}"),
    "amount": ("{s}", "{s}"),
    "setting": ("to {s}", "to {s}", "at {s}"),
    "weight": ("{s}", "weighing {s}", "it weighs {s}"),
    "enum": ("{s}", "{s}", "{s} please"),
    "message": ('saying "{v}"', 'that says "{v}"', "saying {v}", ': "{v}"'),
    "memo": ("for {v}", "for {v}", '("{v}")', "it's for {v}"),
    # Half of them unquoted ("add Dentist on March 14th"): people rarely quote a title, and an adapter that
    # saw only quoted ones copies the rest of the request into the title when no quotes mark its end.
    "title": ('called "{v}"', 'titled "{v}"', 'about "{v}"', '"{v}"', "called {v}", "titled {v}", "{v}", "{v}"),
    "label": ('called "{v}"', 'named "{v}"', "for {v}"),
    "task": ("to {v}", "{v}"),
    "items": ("with {s}", "using {s}", "{s}"),
    "room": ("in the {s}", "in the {s}", "for the {s}"),
    "cuisine": ("{s}", "{s} food", "for {s}"),
    "days": ("every {s}", "on {s}"),
    "plain": ("{s}", "{s}", "for {s}"),
}
_PLACES = {"city", "location", "address", "street", "country", "state", "airport", "hotel", "restaurant"}
_PEOPLE = {"person", "email", "phone", "username"}
_RECIPIENT_WORDS = {"to", "recipient", "recipients", "payee", "receiver", "beneficiary", "contact", "addressee"}
_WITH_WORDS = {"attendees", "participants", "guests", "invitees", "members", "with"}
_LIMIT_WORDS = {"max", "maximum", "limit", "within", "under", "most"}
_DURATIONS = {"minutes", "hours", "seconds", "weeks", "nights"}
# Objects said without an article: "send money", not "send a money".
_MASS_NOUNS = {"money", "music", "weather", "mail", "news", "information", "info", "data", "traffic", "directions"}
_ASKING = ("what's the {t}", "show me the {t}", "check the {t}", "{t}", "{t}", "I need the {t}")
_ASKING_PLURAL = ("find {t}", "any {t}", "show me {t}", "{t}", "look up {t}")
# Words that name_verbs lists for a name's verb but that start a noun phrase: "new calendar event".
_NOT_VERBS = {"new", "any"}
_TELLING = ("{t}", "{t}", "please {t}", "can you {t}", "I need to {t}", "could you {t}")


def frame_kind(name: str, model: values.ParamModel, value: Any) -> str | None:
    """Which frame a value takes, from its kind and its parameter's name; None when no frame fits."""
    words = set(split_name(name))
    kind = model.kind
    if isinstance(value, bool) or kind in ("boolean", "const"):
        return None
    if isinstance(value, list):
        items = model.items
        if items is None or not value:
            return None
        if items.is_enum and {"mon", "fri"} <= {str(e).lower()[:3] for e in items.schema["enum"]}:
            return "days"
        if items.kind in _PEOPLE:
            return "with" if words & _WITH_WORDS or items.kind == "person" else "recipient"
        return "items"
    if isinstance(value, dict):
        return "recipient" if words & _RECIPIENT_WORDS else "plain"
    if kind in _PEOPLE or words & _RECIPIENT_WORDS:
        return "recipient" if words & _RECIPIENT_WORDS or kind in ("email", "phone") else "plain"
    if kind in _PLACES:
        return "place"
    if kind in ("date",):
        return "date"
    if kind == "time":
        return "time"
    if kind == "datetime":
        return "moment"
    if kind in _DURATIONS or kind == "days":
        if words & _LIMIT_WORDS:
            return "limit"
        return "span" if kind == "days" else "duration"
    if kind == "count":
        return "count" if model.unit else "plain"
    if kind == "money":
        return "price_limit" if words & _LIMIT_WORDS else "amount"
    if kind in ("distance", "calories", "steps", "rating"):
        return "amount"
    if kind in ("temperature", "level", "percent"):
        return "setting"
    if kind == "weight":
        return "weight"
    if kind == "enum":
        return "enum"
    if kind in ("message",):
        return "message"
    if kind == "memo":
        return "memo"
    if kind in ("title",):
        return "title"
    if kind in ("label", "tag", "category"):
        return "label"
    if kind == "task":
        return "task"
    if kind in ("room", "cuisine"):
        return kind
    return "plain"


def value_phrase(name: str, model: values.ParamModel, value: Any, rng: random.Random) -> str | None:
    """One value in a frame people use: `payee` Maria -> "to Maria", `time` 18:00 -> "at 6pm"."""
    role = role_prefix(name)
    spoken = values.spoken(model, value, rng)
    if role:
        return role + spoken
    kind = frame_kind(name, model, value)
    if kind is None:
        return None
    if kind in ("count", "duration", "span", "limit") and spoken.strip().replace(".", "").isdigit():
        return None  # a bare number says nothing about what it counts: "for 4"
    return rng.choice(_FRAMES[kind]).format(s=spoken, v=value)


def _article(topic: str, rng: random.Random) -> str:
    """ "ship package" -> "ship a package" or "ship the package" (or as it is); "send money" stays."""
    verb, _, rest = topic.partition(" ")
    if not rest or rest.split()[-1] in _MASS_NOUNS or rest.endswith("s") or rng.random() < 0.5:
        return topic
    if rng.random() < 0.3:
        return f"{verb} the {rest}"
    return f"{verb} {'an' if rest[0] in 'aeiou' else 'a'} {rest}"


def intent_phrase(tool_name: str, topics: list[str], rng: random.Random) -> str:
    """What the user wants, said as a request: a verb-led order for an action ("can you send money", "set
    an alarm"), the bare object ("money", "calendar event"), or a question or bare topic for a lookup
    ("what's the weather forecast", "find restaurants")."""
    topic = rng.choice(topics)
    first = split_name(tool_name)[:1]
    if first and first[0] not in GENERIC_NAME_VERBS:
        verbs = [first[0]] + values.vocab().get("name_verbs", {}).get(first[0], [])
        verbs = [v for v in verbs if v not in _NOT_VERBS]
        if any(topic == v or topic.startswith(v + " ") for v in verbs):
            return rng.choice(_TELLING).format(t=_article(topic, rng))
        if first[0] in values.vocab().get("name_verbs", {}):
            return topic  # the object alone, as people name what they want: "money to Maria, $20"
    frames = _ASKING_PLURAL if topic.endswith("s") else _ASKING
    return rng.choice(frames).format(t=topic)


def compose(
    tool_name: str,
    topics: list[str],
    models: dict[str, values.ParamModel],
    arguments: dict[str, Any],
    rng: random.Random,
) -> str | None:
    """A request stating exactly `arguments`, or None when some value has no frame (the teacher writes
    that one). Values keep the schema's order, which is usually the order people give them in ("72
    fahrenheit in the bedroom"), with an occasional swap of two neighbours."""
    phrases = []
    for name, value in arguments.items():
        phrase = value_phrase(name, models[name], value, rng)
        if phrase is None:
            return None
        phrases.append(phrase)
    if len(phrases) > 2 and rng.random() < 0.3:
        i = rng.randrange(1, len(phrases) - 1)
        phrases[i], phrases[i + 1] = phrases[i + 1], phrases[i]
    intent = intent_phrase(tool_name, topics, rng)
    values_first = rng.random() < 0.15  # what is wanted last: "$20 to Maria, send money"
    upper = rng.random() < 0.5
    # Two neighbouring values can read as a label by chance ("8 nights 8 mar"): a comma parts them.
    for joiner in (", " if rng.random() < 0.35 else " ", ", "):
        body = joiner.join(phrases)
        text = f"{body}, {intent}" if values_first and phrases else f"{intent} {body}"
        text = " ".join(text.replace(" ,", ",").split())
        first = text.lower().find("please")
        if first >= 0:  # one "please" is polite, two are a template
            text = text[: first + 6] + text[first + 6 :].replace(" please", "")
        if realism.name_leak(text, arguments) is None:
            return text[0].upper() + text[1:] if upper else text
    return None
