"""Draw plausible values from a JSON Schema, deterministically for a given random generator."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

# Small pools keyed by words that often appear in parameter names; they make simulated data readable.
_POOLS: dict[str, list[str]] = {
    "city": ["Paris", "Tokyo", "Lisbon", "Nairobi", "Toronto", "Oslo", "Lima", "Seoul", "Cairo", "Denver"],
    "country": ["France", "Japan", "Portugal", "Kenya", "Canada", "Norway", "Peru", "Egypt"],
    "name": ["Alice", "Bob", "Carmen", "Dmitri", "Emeka", "Fatima", "Greta", "Hiro"],
    "currency": ["USD", "EUR", "JPY", "GBP", "CHF", "CAD"],
    "condition": ["sunny", "cloudy", "light rain", "windy", "snow showers", "clear"],
    "status": ["ok", "done", "scheduled", "confirmed"],
    "title": ["Quarterly review", "Dentist", "Team lunch", "Flight to Oslo", "Yoga class"],
    "message": ["Done.", "Request completed.", "All set."],
    "query": ["best hiking trails", "python asyncio tutorial", "vegan lasagna recipe"],
}
_WORDS = ["alpha", "harbor", "maple", "orbit", "quartz", "river", "summit", "velvet", "willow", "zephyr"]


def _pool_for(name: str) -> list[str] | None:
    lowered = name.lower()
    for key, pool in _POOLS.items():
        if key in lowered:
            return pool
    return None


def _string(schema: dict[str, Any], rng: random.Random, name: str) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return (dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(365))).isoformat()
    if fmt == "date-time":
        moment = dt.datetime(2026, 1, 1, 8) + dt.timedelta(minutes=15 * rng.randrange(35040))
        return moment.isoformat()
    if fmt == "time":
        return f"{rng.randrange(7, 22):02d}:{rng.choice([0, 15, 30, 45]):02d}"
    if fmt == "email":
        return f"{rng.choice(_POOLS['name']).lower()}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{rng.choice(_WORDS)}"
    pool = _pool_for(name)
    value = rng.choice(pool) if pool else f"{rng.choice(_WORDS)} {rng.choice(_WORDS)}"
    max_length = schema.get("maxLength")
    return value[:max_length] if isinstance(max_length, int) else value


def _number(schema: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + 100))
    if integer:
        low, high = int(low), int(high)
        if "exclusiveMinimum" in schema:
            low += 1
        if "exclusiveMaximum" in schema:
            high -= 1
        return rng.randint(low, max(low, high))
    return round(rng.uniform(float(low), float(high)), 1)


def sample_value(schema: Any, rng: random.Random, name: str = "", depth: int = 0, optional_rate: float = 0.7) -> Any:
    """One value that satisfies common schemas (enum, const, types, ranges, formats, objects, arrays)."""
    if not isinstance(schema, dict) or depth > 6:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return sample_value(rng.choice(schema[key]), rng, name, depth + 1, optional_rate)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = rng.choice([k for k in kind if k != "null"] or ["null"])
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "string":
        return _string(schema, rng, name)
    if kind == "integer":
        return _number(schema, rng, integer=True)
    if kind == "number":
        return _number(schema, rng, integer=False)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "array":
        low = min(int(schema.get("minItems", 1)), 20)  # the loader refuses more than a request can state
        high = int(schema.get("maxItems", max(low, 3)))
        count = rng.randint(low, max(low, min(high, low + 5)))
        return [sample_value(schema.get("items", {}), rng, name, depth + 1, optional_rate) for _ in range(count)]
    if kind == "object":
        props = schema.get("properties", {}) or {}
        required = set(schema.get("required", []) or [])
        out = {}
        for key, sub in props.items():
            if key in required or rng.random() < optional_rate:
                out[key] = sample_value(sub, rng, key, depth + 1, optional_rate)
        return out
    return None
