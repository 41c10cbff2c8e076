"""The built-in bank of human-style requests (`shots.py` turns them into few-shot shots for a tool).

When a tools file has no examples, the teacher still needs to see how people ask for things. The bank
(`data/requests.txt`) holds several hundred requests across many domains and registers, each with the
values it states and their kinds (a place and a date, an amount and a person, a list of items).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from loraforge.generators import values
from loraforge.generators.phrasing import split_name


@dataclass(frozen=True)
class BankEntry:
    """One request from the bank: its topic, the values it states (as written) and their kinds."""

    topic: str
    details: tuple[tuple[str, str], ...]  # (parameter name, value as the request writes it)
    # a list's items are separated by ", " in the bank file; the request may join the last with "and"
    request: str
    kinds: tuple[str, ...]  # every detail's kinds, flattened (what shots are matched on)
    detail_kinds: tuple[tuple[str, ...], ...] = ()  # the kinds of each detail: ("array", "ingredient")


def parse_line(line: str) -> BankEntry | None:
    """`topic | name=value; name*=value | request` -> an entry; comments and blank lines -> None."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    topic, fields, request = (part.strip() for part in line.split("|", 2))
    details, kinds, per_detail = [], [], []
    for item in filter(None, (f.strip() for f in fields.split(";"))):
        name, value = (part.strip() for part in item.split("=", 1))
        enum = name.endswith("*")
        name = name.rstrip("*")
        details.append((name, value))
        if name.endswith("s") and ", " in value:  # a plural name with a comma-separated value is a list
            items: dict[str, Any] = {"enum": [value]} if enum else {"type": "string"}
            schema: dict[str, Any] = {"type": "array", "items": items}
        else:
            schema = {"enum": [value]} if enum else {"type": _type_of(value)}
        if re.fullmatch(r"[^@\s]+@[^@\s]+\.\w+", value):
            schema["format"] = "email"
        found = values.kinds_of(values.model_param(name, schema))
        kinds += found
        per_detail.append(tuple(found))
    return BankEntry(topic, tuple(details), request, tuple(kinds), tuple(per_detail))


def _type_of(value: str) -> str:
    """A number, with or without its unit ("$12.40", "60 bucks", "2 cups"), or a string."""
    if re.search(r"\d\s*(am|pm)\b|\d:\d\d", value.lower()):
        return "string"  # a time of day
    return "number" if re.fullmatch(r"[$€£]?\d[\d,]*(\.\d+)?k?(\s*[A-Za-z%°]+)?", value) else "string"


@functools.lru_cache(maxsize=1)
def load_bank() -> tuple[BankEntry, ...]:
    text = resources.files("loraforge.generators").joinpath("data/requests.txt").read_text(encoding="utf-8")
    return tuple(entry for entry in map(parse_line, text.splitlines()) if entry is not None)


def role_prefix(name: str) -> str:
    """Words that tell the teacher which of two similar values is which: origin -> "from"."""
    words = split_name(name)
    head = words[-1] if words else ""
    if head in ("origin", "from", "source", "start", "pickup", "departure") or words[:1] == ["from"]:
        return "from "
    if head in ("destination", "to", "target", "dropoff", "end", "arrival") or words[:1] == ["to"]:
        return "to "
    return ""
