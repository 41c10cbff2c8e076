"""Free-text values composed from templates (data/free_text.yaml): new text every time, as people write it.

A parameter such as a text message, an email subject or an alarm label has no library of real values.
A fixed list of twenty strings teaches an adapter those twenty strings; on a user's own words it then
drops the punctuation or invents a word. Templates with slots (names, times, places, numbers) give each
example its own value, and the adapter learns to copy what the user said.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

_SLOT = re.compile(r"\{(\w+)\}")
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "tomorrow", "tonight"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]  # fmt: skip
# vocab.yaml lists that a slot of the same (singular) name draws from.
_POOLS = {
    "message": "messages",
    "email_subject": "email_subjects",
    "event_title": "event_titles",
    "label": "labels",
    "memo": "memos",
    "place": "places",
    "grocery": "groceries",
    "dish": "dishes",
    "sport": "sports",
}


@lru_cache(maxsize=1)
def templates() -> dict[str, list[str]]:
    text = resources.files("loraforge.generators").joinpath("data", "free_text.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _clock(rng: random.Random) -> str:
    hour = rng.randint(6, 21)
    shown = hour if hour <= 12 else hour - 12
    return rng.choice(
        [f"{shown}", f"{shown}pm" if hour >= 12 else f"{shown}am", f"{hour}:{rng.choice(['15', '30', '45'])}"]
    )


def compose(kind: str, rng: random.Random, vocab: dict[str, Any], first_name: Callable[[], str]) -> str | None:
    """A value for `kind` (a key of free_text.yaml), or None for a kind with no templates."""
    options = templates().get(kind)
    if not options:
        return None

    def fill(match: re.Match) -> str:
        slot = match.group(1)
        if slot in _POOLS:
            value = str(rng.choice(vocab[_POOLS[slot]]))
            return value.lower() if slot in ("place", "grocery", "dish", "sport") and not value[:1].isupper() else value
        if slot == "first":
            return first_name()
        if slot == "clock":
            return _clock(rng)
        if slot == "minutes":
            return str(rng.choice([5, 10, 15, 20, 25, 40, 45]))
        if slot == "small":
            return str(rng.randint(2, 6))
        if slot == "n":
            return str(rng.choice([rng.randint(100, 999), rng.randint(1000, 99999)]))
        if slot in ("day", "day2"):
            return rng.choice(_DAYS)
        if slot == "month":
            return rng.choice(_MONTHS)
        if slot == "date_day":
            return str(rng.randint(1, 28))
        if slot == "city":
            return str(rng.choice(vocab["world_cities"])[0])
        raise KeyError(f"free_text.yaml: unknown slot {{{slot}}} in a {kind} template")

    text = _SLOT.sub(fill, rng.choice(options))
    return text[:1].upper() + text[1:] if kind in ("email_subject", "event_title", "email_body") else text
