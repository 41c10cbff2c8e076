"""Synthetic tool-calling conversations from a llama.cpp teacher, verified before use.

Each example is built in four steps: the teacher proposes arguments under the tool's JSON Schema
(constrained decoding), then writes a user request that states those values, the tool's response is
simulated, and the teacher writes the final answer. Anything that fails a check is dropped and counted.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loraforge.generators import prompts, verify
from loraforge.runtime.client import LlamaClient
from loraforge.tools.definition import ToolDefinition
from loraforge.tools.simulate import accepts_call, simulate_response


@dataclass
class GenerationConfig:
    """How much data to make and how the teacher samples."""

    examples: int = field(default=64, metadata={"help": "Verified examples to produce, e.g. 64."})
    temperature: float = field(default=0.8, metadata={"help": "Teacher sampling temperature, e.g. 0.8."})
    top_p: float = field(default=0.95, metadata={"help": "Teacher nucleus sampling, e.g. 0.95."})
    attempts: int = field(default=6, metadata={"help": "Tries per example before it is given up."})
    seed: int = field(default=0, metadata={"help": "Seed; example i always uses the same sub-seed."})


@dataclass
class GenerationStats:
    """Counts for the data report: accepted per tool, rejections per reason, a few rejected samples."""

    accepted: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    samples: dict[str, list[Any]] = field(default_factory=dict)
    given_up: int = 0

    def reject(self, reason: str, sample: Any) -> None:
        self.rejected[reason] += 1
        kept = self.samples.setdefault(reason, [])
        if len(kept) < 3:
            kept.append(sample)

    def report(self) -> dict[str, Any]:
        attempts = sum(self.accepted.values()) + sum(self.rejected.values())
        return {
            "accepted": sum(self.accepted.values()),
            "per_tool": dict(self.accepted),
            "rejected": dict(self.rejected),
            "rejection_rate": {k: v / attempts for k, v in self.rejected.items()} if attempts else {},
            "rejected_samples": self.samples,
            "given_up": self.given_up,
        }


class Rejected(Exception):
    def __init__(self, reason: str, sample: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sample = sample


def tool_call_row(
    tool_list: list[dict[str, Any]],
    request: str,
    calls: list[tuple[str, dict[str, Any]]],
    results: list[Any],
    answer: str,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """A conversation in the OpenAI/TRL chat format."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": request}]
    messages.append(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls],
        }
    )
    for result in results:
        messages.append({"role": "tool", "content": json.dumps(result, ensure_ascii=False)})
    messages.append({"role": "assistant", "content": answer})
    return {"messages": messages, "tools": tool_list, "meta": meta}


class ToolCallGenerator:
    """Makes verified tool-calling examples; concurrency is bounded by the client's request slots."""

    def __init__(self, tools: list[ToolDefinition], client: LlamaClient, config: GenerationConfig) -> None:
        if not tools:
            raise ValueError("at least one tool is needed")
        self.tools = tools
        self.client = client
        self.config = config
        self.stats = GenerationStats()
        self._seen_requests: set[str] = set()
        self._accepted_shots: dict[str, list[tuple[dict[str, Any], str]]] = {t.name: [] for t in tools}
        self._tool_list = [t.to_openai() for t in tools]

    async def generate(
        self,
        indices: list[int],
        on_example: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Make one example per index; the same index always starts from the same seed."""
        results: list[dict[str, Any]] = []

        async def work(index: int) -> None:
            row = await self._example(index)
            if row is not None:
                results.append(row)
                if on_example:
                    on_example(row)

        await asyncio.gather(*(work(i) for i in indices))
        results.sort(key=lambda r: r["meta"]["index"])
        return results

    async def _example(self, index: int) -> dict[str, Any] | None:
        for attempt in range(self.config.attempts):
            seed = (self.config.seed * 1_000_003 + index) * 31 + attempt
            rng = random.Random(seed)
            tool = self.tools[index % len(self.tools)] if attempt == 0 else rng.choice(self.tools)
            try:
                row = await self._attempt(tool, rng, seed, index)
            except Rejected as rejection:
                self.stats.reject(rejection.reason, rejection.sample)
                continue
            self.stats.accepted[tool.name] += 1
            return row
        self.stats.given_up += 1
        return None

    async def _attempt(self, tool: ToolDefinition, rng: random.Random, seed: int, index: int) -> dict[str, Any]:
        cfg = self.config
        arguments = await self._arguments(tool, rng, seed)
        request = await self._request(tool, arguments, rng, seed)
        result = simulate_response(tool, arguments, seed)
        answer = await self._answer(tool, request, result, rng, seed)
        self._accepted_shots[tool.name].append((arguments, request))
        meta = {"index": index, "style": "single", "tool": tool.name, "seed": seed, "temperature": cfg.temperature}
        return tool_call_row(self._tool_list, request, [(tool.name, arguments)], [result], answer, meta)

    async def _arguments(self, tool: ToolDefinition, rng: random.Random, seed: int) -> dict[str, Any]:
        shots = [ex.arguments for ex in tool.examples]
        shots += [
            args
            for args, _ in rng.sample(self._accepted_shots[tool.name], k=min(2, len(self._accepted_shots[tool.name])))
        ]
        rng.shuffle(shots)
        text = await self.client.complete(
            prompts.arguments_prompt(tool, shots[:4]),
            json_schema=tool.parameters,
            max_tokens=96,
            temperature=max(self.config.temperature, 0.9),
            top_p=self.config.top_p,
            seed=seed,
        )
        try:
            arguments = json.loads(text)
        except json.JSONDecodeError:
            raise Rejected("malformed_arguments", text) from None
        # Enumerations are drawn evenly from the schema: a small teacher copies the few-shot values.
        for name, schema in tool.properties.items():
            if name in arguments and schema.get("enum"):
                arguments[name] = rng.choice(schema["enum"])
        problem = accepts_call(tool, arguments)
        if problem:
            raise Rejected("schema_invalid", {"arguments": arguments, "problem": problem})
        return arguments

    async def _request(self, tool: ToolDefinition, arguments: dict[str, Any], rng: random.Random, seed: int) -> str:
        shots = [(ex.arguments, ex.request) for ex in tool.examples]
        accepted = self._accepted_shots[tool.name]
        shots += rng.sample(accepted, k=min(2, len(accepted)))
        rng.shuffle(shots)
        text = await self.client.complete(
            prompts.request_prompt(tool, shots[:4], arguments),
            stop=["\n"],
            max_tokens=60,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            seed=seed,
        )
        request = verify.clean_line(text)
        problem = verify.request_problem(request)
        if problem:
            raise Rejected(problem, request)
        missing = verify.ungrounded_arguments(arguments, request)
        if missing:
            raise Rejected("ungrounded", {"request": request, "arguments": arguments, "missing": missing})
        key = " ".join(request.lower().split())
        if key in self._seen_requests:
            raise Rejected("duplicate", request)
        self._seen_requests.add(key)
        return request

    async def _answer(self, tool: ToolDefinition, request: str, result: Any, rng: random.Random, seed: int) -> str:
        text = await self.client.complete(
            prompts.answer_prompt(request, result, rng),
            stop=["\n"],
            max_tokens=60,
            temperature=0.3,
            seed=seed,
        )
        answer = verify.clean_line(text)
        facts = list(result.values()) if isinstance(result, dict) else [result]
        scalars = [v for v in facts if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
        if len(answer) < 8 or (scalars and not any(verify.value_grounded(v, answer) for v in scalars)):
            self.stats.rejected["answer_fallback"] += 1
            return prompts.fallback_answer(tool, result)
        return answer
