"""Argument values for synthetic calls, drawn from each parameter's value model.

Most values come from the value model (`values.py`: Faker, built-in lists, the schema). Parameters that no
list models ("free" text) come from value pools that the teacher fills, a list at a time, under a JSON
Schema constraint; every pooled value must pass the same plausibility check as any other value.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from loraforge.generators import values
from loraforge.runtime.protocol import ChatClient
from loraforge.tools.definition import ToolDefinition

# Kinds whose value is the user's own wording: a loosely stated one is repaired to the request's span.
TEXT_KINDS = {"free", "message", "memo", "title", "task", "query", "label", "tag", "category"}


def is_free_text(model: values.ParamModel) -> bool:
    return model.kind in TEXT_KINDS and model.schema.get("type", "string") == "string" and not model.is_enum


class ArgumentDrafter:
    """Draws argument objects for a tool. Pools are per (tool, parameter path) and refill when empty."""

    def __init__(self, client: ChatClient, *, temperature: float = 0.9, pool_size: int = 10) -> None:
        self.client = client
        self.temperature = temperature
        self.pool_size = pool_size
        self.source = values.ValueSource()
        self._models: dict[str, dict[str, values.ParamModel]] = {}
        self._pools: dict[tuple[str, str], list[Any]] = {}
        self._used: dict[tuple[str, str], set[str]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.teacher_calls = 0
        self.implausible: list[dict[str, Any]] = []  # pooled values refused, for the data report

    def models(self, tool: ToolDefinition) -> dict[str, values.ParamModel]:
        if tool.name not in self._models:
            self._models[tool.name] = values.model_tool(tool)
        return self._models[tool.name]

    def seed_values(self, tool: ToolDefinition, name: str) -> list[Any]:
        values_ = [ex.arguments[name] for ex in tool.examples if name in ex.arguments]
        schema = tool.properties.get(name, {})
        if not values_ and schema.get("examples"):
            values_ = list(schema["examples"])
        return values_

    async def _refill(self, tool: ToolDefinition, path: str, model: values.ParamModel, rng: random.Random) -> None:
        key = (tool.name, path)
        seeds = [v for v in self.seed_values(tool, path) if isinstance(v, str)] or [str(e) for e in model.examples]
        description = model.description
        prompt = (
            f'Realistic values that people give for "{" ".join(values.phrasing.split_name(path))}"'
            f"{f' ({description})' if description else ''}, as short JSON lists:\n"
            f"{json.dumps(seeds[:4] or ['...'], ensure_ascii=False)}\n"
        )
        item = {k: v for k, v in model.schema.items() if k in ("type", "maxLength", "minLength", "pattern")}
        item["type"] = "string"
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
            proposed = json.loads(text)
        except json.JSONDecodeError:
            proposed = []
        used = self._used.setdefault(key, set())
        fresh = []
        for value in proposed if isinstance(proposed, list) else []:
            if not isinstance(value, str):
                continue
            value = " ".join(value.split())
            problem = values.plausible(model, value, tool.name)
            if problem:
                if len(self.implausible) < 200:
                    self.implausible.append({"tool": tool.name, "parameter": path, "value": value, "why": problem})
                continue
            if value.lower() not in used:
                used.add(value.lower())
                fresh.append(value)
        if not fresh:  # a teacher that gives nothing usable still lets generation go on
            fresh = seeds or [self.source.draw(model, rng)]
        self._pools.setdefault(key, []).extend(fresh)

    async def pooled(self, tool: ToolDefinition, path: str, model: values.ParamModel, rng: random.Random) -> str:
        key = (tool.name, path)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if not self._pools.get(key):
                await self._refill(tool, path, model, rng)
            pool = self._pools[key]
            return pool.pop(rng.randrange(len(pool)))

    async def _value(
        self, tool: ToolDefinition, path: str, model: values.ParamModel, rng: random.Random, rate: float
    ) -> Any:
        if values.needs_pool(model):
            return await self.pooled(tool, path, model, rng)
        if model.kind == "object" and any(values.needs_pool(f) for f in model.fields.values()):
            out = {}
            for key, sub in model.fields.items():
                if key in model.required or rng.random() < rate:
                    out[key] = await self._value(tool, f"{path}.{key}", sub, rng, rate)
            return out
        if model.kind == "array" and model.items is not None and values.needs_pool(model.items):
            count = max(1, int(model.schema.get("minItems", 1) or 1))
            count = rng.randint(count, max(count, min(3, int(model.schema.get("maxItems", 3) or 3))))
            items = [await self.pooled(tool, path, model.items, rng) for _ in range(count)]
            return list(dict.fromkeys(items))
        return self.source.draw(model, rng, optional_rate=rate)

    async def draft(
        self,
        tool: ToolDefinition,
        rng: random.Random,
        *,
        optional_rate: float | dict[str, float] = 0.5,
        like: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new argument object. With `like`, the same parameters are present (for variations).

        `optional_rate` is the chance that an optional parameter appears, or a rate per parameter name. A
        call to a tool that has parameters names at least one (an empty call teaches nothing).
        """
        models = self.models(tool)
        required = set(tool.required)
        present = []
        for name in models:
            rate = optional_rate.get(name, 0.5) if isinstance(optional_rate, dict) else optional_rate
            if models[name].kind == "boolean" and name not in required:
                rate *= 0.4  # a flag is rarely what a request is about
            if like is not None and name in like or like is None and (name in required or rng.random() < rate):
                present.append(name)
        if not present and models and like is None:
            present = [rng.choice([n for n in models if models[n].kind != "boolean"] or list(models))]
        arguments: dict[str, Any] = {}
        for name in present:
            arguments[name] = await self._value(tool, name, models[name], rng, 0.5)
        values.harmonise(models, arguments, self.source, rng)
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
