"""The built-in bank of human-style requests, and the choice of few-shot shots from it.

When a tools file has no examples, the teacher still needs to see how people ask for things. The bank
(`data/requests.txt`) holds several hundred requests across many domains and registers, each with the
values it states. Shots for a tool are the bank entries whose parameters are of the same kinds (a place
and a date, an amount and a person, a list of items), so the teacher sees how people phrase those kinds.
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter
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
            item: dict[str, Any] = {"enum": [value]} if enum else {"type": "string"}
            schema: dict[str, Any] = {"type": "array", "items": item}
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


def similarity(kinds: list[str], entry: BankEntry) -> float:
    """How alike two sets of parameter kinds are (Jaccard over the multisets)."""
    mine, theirs = Counter(kinds), Counter(entry.kinds)
    union = sum((mine | theirs).values())
    return sum((mine & theirs).values()) / union if union else 0.0


def pick_shots(
    kinds: list[str], rng: random.Random, k: int = 4, bank: tuple[BankEntry, ...] | None = None
) -> list[BankEntry]:
    """`k` bank entries whose kinds resemble `kinds`, from different topics, with random tie-breaks; the
    last pick is any entry, so every prompt also shows an unrelated register."""
    bank = bank if bank is not None else load_bank()
    scored = sorted(bank, key=lambda e: (-similarity(kinds, e), rng.random()))
    chosen: list[BankEntry] = []
    topics: set[str] = set()
    pool = scored[: max(24, 6 * k)]
    rng.shuffle(pool)
    pool.sort(key=lambda e: -round(similarity(kinds, e), 1))
    for entry in pool:
        if len(chosen) >= k - 1:
            break
        if entry.topic not in topics:
            chosen.append(entry)
            topics.add(entry.topic)
    rest = [e for e in bank if e.topic not in topics]
    if rest:
        chosen.insert(rng.randrange(len(chosen) + 1), rng.choice(rest))
    return chosen
