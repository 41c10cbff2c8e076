"""Restating an optional value that the teacher's request left out, as a short phrase people add.

A small teacher drops values from long requests: asked for an e-mail with a body, it writes one without.
Dropping the value from the call keeps the row true, but data built that way rarely carries optional
parameters, and the adapter learns to leave them out of requests that state them. Part of the time, the
generator adds the value instead, the way people tack one on ("..., vegan please", `... saying "running
late"`, "... every friday and sunday").
"""

from __future__ import annotations

import random
from typing import Any

from loraforge.generators import values

# Phrases per kind of value; {s} is the spoken value (6pm, $20, vegan), {v} the exact one (free text).
_PHRASES: dict[str, tuple[str, ...]] = {
    "enum": ("{s}", "{s} please", "{s} if possible"),
    "message": ('saying "{v}"', 'that says "{v}"', 'with the text "{v}"'),
    "memo": ("for {v}", "it's for {v}", "({v})"),
    "label": ('called "{v}"', 'named "{v}"', "call it {v}"),
    "title": ('called "{v}"', 'named "{v}"'),
    "time": ("at {s}",),
    "room": ("in the {s}", "for the {s}"),
    "location": ("in {s}", "around {s}"),
    "city": ("in {s}",),
    "minutes": ("{s}", "for {s}"),
    "limit": ("max {s}", "under {s}", "no more than {s}"),
    "cuisine": ("{s}", "{s} food"),
    "count": ("for {s}",),
    "people": ("with {s}", "invite {s}"),
    "days": ("every {s}", "on {s}"),
}


def _phrase_kind(model: values.ParamModel, value: Any) -> str | None:
    if isinstance(value, dict) or isinstance(value, bool):
        return None
    if isinstance(value, list):
        items = model.items
        if items is None or not value:
            return None
        if items.kind == "person":
            return "people"
        if items.is_enum and {"mon", "fri"} <= {str(e).lower()[:3] for e in items.schema["enum"]}:
            return "days"
        return None
    if model.kind == "enum":
        return "enum"
    if model.kind in ("task", "tag", "category"):
        return "label"
    if model.kind == "minutes" and model.name.lower().startswith(("max", "limit")):
        return "limit"  # max_minutes: "under 20 minutes"; an event's duration: "for 20 minutes"
    if model.kind in _PHRASES:
        return model.kind
    return None


def restated(
    request: str, model: values.ParamModel, value: Any, rng: random.Random, sentence: bool | None = None
) -> str | None:
    """`request` with `value` added as a short phrase, after a comma or as a sentence of its own
    (`sentence`; at random when None), or None when no phrase fits this kind of value or the phrase would
    not state the value where the generator's own grounding can find it."""
    kind = _phrase_kind(model, value)
    if kind is None:
        return None
    spoken = values.spoken(model, value, rng)
    if kind in ("minutes", "limit", "count") and spoken.strip().isdigit():
        return None  # a bare number tacked on says nothing about what it counts
    phrase = rng.choice(_PHRASES[kind]).format(s=spoken, v=value)
    body = request.rstrip()
    end = body[-1] if body and body[-1] in ".!?" else ""
    body = body[:-1].rstrip() if end else body
    if sentence is None:
        sentence = rng.random() >= 0.75
    if not sentence:
        text = f"{body}, {phrase}{end}"
    else:
        text = f"{body}{end or '.'} {phrase[0].upper()}{phrase[1:]}."
    return text if values.is_stated(model, value, text) else None
