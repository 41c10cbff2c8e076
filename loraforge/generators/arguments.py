"""Argument values for synthetic calls.

Enumerations, numbers, booleans and formatted strings (dates, e-mails) are drawn from the schema itself.
Free-text strings come from value pools that the teacher fills, a list at a time, under a JSON Schema
constraint; one call yields many realistic values, so the expensive prompt is paid once per pool.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from loraforge.runtime.client import LlamaClient
from loraforge.tools.definition import ToolDefinition
from loraforge.tools.schema_sampling import sample_value

_NICE_NUMBERS = [
    1,
    2,
    3,
    5,
    7,
    8,
    10,
    12,
    15,
    20,
    25,
    30,
    40,
    45,
    50,
    60,
    75,
    90,
    100,
    120,
    150,
    200,
    250,
    300,
    500,
    750,
    1000,
    1200,
    1500,
    2000,
    2500,
    5000,
    10000,
]


def is_free_text(schema: dict[str, Any]) -> bool:
    return (
        schema.get("type") == "string" and not schema.get("enum") and not schema.get("format") and "const" not in schema
    )


def nice_number(schema: dict[str, Any], rng: random.Random) -> int | float:
    """Numbers people say: 25, 40, 2500, sometimes 12.5; inside the schema's bounds."""
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", 10000))
    candidates = [n for n in _NICE_NUMBERS if low <= n <= high and n != schema.get("exclusiveMinimum")]
    if schema.get("type") == "number" and rng.random() < 0.2:
        candidates = [n + 0.5 for n in candidates if n + 0.5 <= high] or candidates
    if not candidates or rng.random() < 0.25:
        return sample_value(schema, rng)
    return rng.choice(candidates)


class ArgumentDrafter:
    """Draws argument objects for a tool. Pools are per (tool, parameter) and refill when empty."""

    def __init__(self, client: LlamaClient, *, temperature: float = 0.9, pool_size: int = 10) -> None:
        self.client = client
        self.temperature = temperature
        self.pool_size = pool_size
        self._pools: dict[tuple[str, str], list[Any]] = {}
        self._used: dict[tuple[str, str], set[str]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.teacher_calls = 0

    def seed_values(self, tool: ToolDefinition, name: str) -> list[Any]:
        values = [ex.arguments[name] for ex in tool.examples if name in ex.arguments]
        schema = tool.properties.get(name, {})
        if not values and schema.get("examples"):
            values = list(schema["examples"])
        return values

    async def _refill(self, tool: ToolDefinition, name: str, rng: random.Random) -> None:
        key = (tool.name, name)
        schema = dict(tool.properties.get(name, {}))
        seeds = self.seed_values(tool, name) or [sample_value(schema, rng, name) for _ in range(2)]
        description = schema.get("description", "")
        prompt = (
            f'Realistic, varied values of the parameter "{name}"{f" ({description})" if description else ""} '
            f"of the tool {tool.name} ({tool.description.strip()}), as JSON lists:\n"
            f"{json.dumps(seeds, ensure_ascii=False)}\n"
        )
        item = {k: v for k, v in schema.items() if k in ("type", "maxLength", "minLength", "pattern")}
        item.setdefault("maxLength", 60)
        list_schema = {"type": "array", "items": item, "minItems": 4, "maxItems": self.pool_size}
        self.teacher_calls += 1
        text = await self.client.complete(
            prompt,
            json_schema=list_schema,
            max_tokens=160,
            temperature=self.temperature,
            seed=rng.randrange(2**31),
            family="values",
        )
        try:
            values = json.loads(text)
        except json.JSONDecodeError:
            values = []
        used = self._used.setdefault(key, set())
        fresh = []
        for value in values if isinstance(values, list) else []:
            if not isinstance(value, str):
                continue
            value = " ".join(value.split())
            if 1 < len(value) <= item["maxLength"] and value.lower() not in used:
                used.add(value.lower())
                fresh.append(value)
        if not fresh:  # a teacher that gives nothing usable still lets generation go on
            fresh = [s for s in seeds if isinstance(s, str)] or [sample_value(schema, rng, name)]
        self._pools.setdefault(key, []).extend(fresh)

    async def free_text(self, tool: ToolDefinition, name: str, rng: random.Random) -> str:
        key = (tool.name, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if not self._pools.get(key):
                await self._refill(tool, name, rng)
            pool = self._pools[key]
            return pool.pop(rng.randrange(len(pool)))

    async def draft(
        self,
        tool: ToolDefinition,
        rng: random.Random,
        *,
        optional_rate: float | dict[str, float] = 0.5,
        like: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new argument object. With `like`, the same parameters are present (for variations).

        `optional_rate` is the chance that an optional parameter appears, or a rate per parameter name.
        """
        required = set(tool.required)
        arguments: dict[str, Any] = {}
        for name, schema in tool.properties.items():
            rate = optional_rate.get(name, 0.5) if isinstance(optional_rate, dict) else optional_rate
            present = name in like if like is not None else (name in required or rng.random() < rate)
            if not present:
                continue
            if is_free_text(schema):
                arguments[name] = await self.free_text(tool, name, rng)
            elif schema.get("type") in ("integer", "number") and not schema.get("enum"):
                arguments[name] = nice_number(schema, rng)
            else:
                arguments[name] = sample_value(schema, rng, name)
        return distinct_enums(tool, arguments, rng)


def distinct_enums(tool: ToolDefinition, arguments: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Parameters that share one enumeration (from_currency, to_currency) get different values."""
    seen: dict[tuple, str] = {}
    for name, schema in tool.properties.items():
        choices = schema.get("enum")
        if name not in arguments or not choices or len(choices) < 2:
            continue
        key = tuple(map(str, choices))
        if key in seen and arguments[seen[key]] == arguments[name]:
            arguments[name] = rng.choice([c for c in choices if c != arguments[name]])
        seen.setdefault(key, name)
    return arguments
