"""Synthetic tool-calling conversations in five styles, verified before use.

Styles: single (one call), multiple (one call chosen among several tools), parallel (several calls in
one turn), chain (call, result, next call, result, answer) and no_call (no tool fits; answer in text).
Each call's arguments come from the schema and the teacher's value pools; the teacher writes a request
that states them; checks reject what is off-schema, ungrounded, not recoverable by the teacher (round
trip) or too close to a request already kept. Rejections are counted by reason.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from loraforge.evaluators.exact_match import check_call
from loraforge.generators import prompts, verify
from loraforge.generators.arguments import ArgumentDrafter, is_free_text
from loraforge.generators.dedup import NearDuplicateIndex, rouge_l
from loraforge.generators.plan import STYLES, GenerationPlan
from loraforge.generators.report import GenerationStats
from loraforge.generators.verify import Rejected
from loraforge.runtime.client import LlamaClient
from loraforge.tools.definition import ToolDefinition
from loraforge.tools.simulate import accepts_call, simulate_response


def call_message(calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls],
    }


def tool_message(result: Any) -> dict[str, Any]:
    return {"role": "tool", "content": json.dumps(result, ensure_ascii=False)}


def expected_calls(row: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The calls of every assistant turn that makes calls, as [{"name", "arguments"}] per turn."""
    turns = []
    for message in row["messages"]:
        if message["role"] == "assistant" and message.get("tool_calls"):
            turns.append(
                [
                    {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                    for c in message["tool_calls"]
                ]
            )
    return turns


class ToolCallGenerator:
    """Makes verified tool-calling examples; concurrency is bounded by the client's request slots."""

    def __init__(
        self,
        tools: list[ToolDefinition],
        client: LlamaClient,
        plan: GenerationPlan | None = None,
        *,
        seed: int = 0,
        attempts: int = 8,
        dedup_threshold: float = 0.7,
    ) -> None:
        if not tools:
            raise ValueError("at least one tool is needed")
        self.tools = tools
        self.by_name = {t.name: t for t in tools}
        self.client = client
        self.plan = plan or GenerationPlan()
        self.seed = seed
        self.attempts = attempts
        self.stats = GenerationStats()
        self.drafter = ArgumentDrafter(client)
        self.dedup = NearDuplicateIndex(dedup_threshold)
        self._shots: dict[str, list[tuple[dict[str, Any], str]]] = {t.name: [] for t in tools}
        self._no_call_shots: list[str] = []
        self._teacher_calls = 0
        self._assigned: Counter = Counter()
        for tool in tools:
            for example in tool.examples:
                self.dedup.add(example.request, force=True)

    # ---- driving ------------------------------------------------------------------------------

    def remember(self, rows: list[dict[str, Any]]) -> None:
        """Rows kept by an earlier, interrupted generation: they count for near-duplicates and style shares."""
        for row in rows:
            self.dedup.add(row["messages"][0]["content"], force=True)
            self.stats.accept(row)
            self._assigned[row["meta"].get("style", "single")] += 1

    async def generate(
        self, indices: list[int], on_example: Callable[[dict[str, Any]], None] | None = None
    ) -> list[dict[str, Any]]:
        """One example per index; the same index always starts from the same seed."""
        results: list[dict[str, Any]] = []

        async def work(index: int) -> None:
            row = await self._example(index)
            if row is not None:
                results.append(row)
                if on_example:
                    on_example(row)

        await asyncio.gather(*(work(i) for i in indices))
        self.stats.teacher_calls = self.drafter.teacher_calls + self._teacher_calls
        results.sort(key=lambda r: r["meta"]["index"])
        return results

    async def _complete(self, prompt: str, **kwargs: Any) -> str:
        self._teacher_calls += 1
        return await self.client.complete(prompt, **kwargs)

    async def _example(self, index: int) -> dict[str, Any] | None:
        plan = self.plan
        # The style and the target are fixed per index, so hard styles are retried, not replaced by easy ones.
        chooser = random.Random((self.seed * 1_000_003 + index) * 97)
        target = None
        if plan.variations and chooser.random() < plan.variation_share:
            target = chooser.choice(plan.variations)
        style = target["meta"]["style"] if target else self._next_style()
        self._assigned[style] += 1
        for attempt in range(self.attempts):
            seed = (self.seed * 1_000_003 + index) * 97 + attempt + 1
            rng = random.Random(seed)
            try:
                if style == "no_call":
                    row = await self._no_call(rng)
                elif style in ("parallel", "chain"):
                    row = await self._pair(rng, style, target)
                else:
                    row = await self._single(rng, style, target)
                request = row["messages"][0]["content"]
                if self.dedup.is_duplicate(request):
                    raise Rejected("near_duplicate", request)
                self.dedup.add(request, force=True)
            except Rejected as rejection:
                self.stats.reject(rejection.reason, rejection.sample)
                continue
            row["meta"].update({"index": index, "seed": seed, "temperature": plan.temperature})
            if target is not None:
                row["meta"]["target"] = {
                    "variation_of": target.get("id", target["meta"].get("index")),
                    "error": target["meta"].get("error"),
                }
            self.stats.accept(row)
            return row
        self.stats.given_up += 1
        self._assigned[style] -= 1
        return None

    def _next_style(self) -> str:
        """The style furthest below its weight, counting examples kept and in flight, so that every style
        keeps its share even though some (parallel, chain) fail more often than others."""
        weights = {s: w for s, w in self.plan.style_weights.items() if w > 0}
        total = sum(weights.values())
        return min(weights, key=lambda s: (self._assigned[s] / (weights[s] / total), STYLES.index(s)))

    # ---- styles -------------------------------------------------------------------------------

    def _pick_tool(self, rng: random.Random, exclude: set[str] = frozenset()) -> ToolDefinition:
        names = [t.name for t in self.tools if t.name not in exclude] or [t.name for t in self.tools]
        return self.by_name[self.plan.pick(rng, names, self.plan.tool_weights)]

    def _present(self, rng: random.Random, needed: list[ToolDefinition], at_least: int) -> list[dict[str, Any]]:
        """The tools shown in the prompt: the needed ones plus distractors, or every tool."""
        if rng.random() < self.plan.full_tool_list_rate or at_least >= len(self.tools):
            chosen = list(self.tools)
        else:
            others = [t for t in self.tools if t not in needed]
            extra = rng.randint(max(0, at_least - len(needed)), max(0, min(len(others), at_least + 1 - len(needed))))
            picked = {t.name for t in needed + rng.sample(others, k=min(extra, len(others)))}
            # Tools keep the file's order: rows showing the same tools then share their whole system
            # prompt, which training computes once per batch.
            chosen = [t for t in self.tools if t.name in picked]
        return [t.to_openai() for t in chosen]

    async def _single(self, rng: random.Random, style: str, target: dict | None) -> dict[str, Any]:
        like = None
        if target:
            (first,) = expected_calls(target)[0][:1]
            tool, like = self.by_name[first["name"]], first["arguments"]
        else:
            tool = self._pick_tool(rng)
        arguments, request = await self._call_and_request(tool, rng, like)
        result = simulate_response(tool, arguments, rng.randrange(2**31))
        answer = await self._answer(tool, request, result)
        presented = self._present(rng, [tool], 1 if style == "single" else 3)
        messages = [
            {"role": "user", "content": prompts.vary_register(request, rng)},
            call_message([(tool.name, arguments)]),
            tool_message(result),
            {"role": "assistant", "content": answer},
        ]
        return {"messages": messages, "tools": presented, "meta": {"style": style, "tools_called": [tool.name]}}

    async def _pair(self, rng: random.Random, style: str, target: dict | None) -> dict[str, Any]:
        if target:
            calls = [c for turn in expected_calls(target) for c in turn][:2]
            picks = [(self.by_name[c["name"]], c["arguments"]) for c in calls]
        else:
            first = self._pick_tool(rng)
            second = first if style == "parallel" and rng.random() < 0.4 else self._pick_tool(rng, {first.name})
            picks = [(first, None), (second, None)]
        parts = []
        for tool, like in picks:
            arguments, request = await self._call_and_request(tool, rng, like)
            if parts and arguments == parts[0][1]:
                raise Rejected("repeated_call", arguments)
            result = simulate_response(tool, arguments, rng.randrange(2**31))
            parts.append((tool, arguments, request, result))
        joiners = prompts.PARALLEL_JOINERS if style == "parallel" else prompts.CHAIN_JOINERS
        request = prompts.join_requests(parts[0][2], parts[1][2], joiners, rng)
        answers = [await self._answer(tool, req, result) for tool, _, req, result in parts]
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompts.vary_register(request, rng)}]
        if style == "parallel":
            messages.append(call_message([(tool.name, args) for tool, args, _, _ in parts]))
            messages += [tool_message(result) for *_, result in parts]
        else:
            for tool, args, _, result in parts:
                messages += [call_message([(tool.name, args)]), tool_message(result)]
        messages.append({"role": "assistant", "content": " ".join(answers)})
        needed = list({tool.name: tool for tool, *_ in parts}.values())
        return {
            "messages": messages,
            "tools": self._present(rng, needed, 3),
            "meta": {"style": style, "tools_called": [tool.name for tool, *_ in parts]},
        }

    async def _no_call(self, rng: random.Random) -> dict[str, Any]:
        shots = rng.sample(prompts.NO_CALL_SEEDS, k=4) + rng.sample(
            self._no_call_shots, k=min(2, len(self._no_call_shots))
        )
        text = await self._complete(
            prompts.no_call_prompt(shots),
            family="no_call",
            stop=["\n"],
            max_tokens=40,
            temperature=self.plan.temperature,
            top_p=self.plan.top_p,
            seed=rng.randrange(2**31),
        )
        request = verify.clean_line(text)
        problem = verify.request_problem(request)
        if problem:
            raise Rejected(problem, request)
        for tool in self.tools:
            references = [tool.description] + [ex.request for ex in tool.examples]
            if tool.name.replace("_", " ") in request.lower() or max(rouge_l(request, r) for r in references) > 0.5:
                raise Rejected("no_call_looks_like_a_tool_request", {"request": request, "tool": tool.name})
        reply = await self.client.chat(
            [{"role": "user", "content": request}], max_tokens=80, temperature=0.3, seed=rng.randrange(2**31)
        )
        self._teacher_calls += 1
        answer = verify.first_sentences(reply.content, 2)
        if len(answer) < 4 or "<tool_call>" in answer:
            raise Rejected("no_call_bad_answer", {"request": request, "answer": reply.content[:200]})
        self._no_call_shots.append(request)
        messages = [{"role": "user", "content": request}, {"role": "assistant", "content": answer}]
        presented = self._present(rng, [], rng.randint(1, 3))
        return {"messages": messages, "tools": presented, "meta": {"style": "no_call", "tools_called": []}}

    # ---- building blocks ----------------------------------------------------------------------

    async def _call_and_request(
        self, tool: ToolDefinition, rng: random.Random, like: dict[str, Any] | None = None, tries: int = 3
    ) -> tuple[dict[str, Any], str]:
        """Arguments and a verified request for them; a failed request is retried with new values."""
        for attempt in range(tries):
            if like is None:
                rates = {name: self.plan.optional_rate(tool.name, name) for name in tool.properties}
                arguments = await self.drafter.draft(tool, rng, optional_rate=rates)
            else:
                arguments = await self.drafter.draft(tool, rng, like=like)
            try:
                problem = accepts_call(tool, arguments)
                if problem:
                    raise Rejected("schema_invalid", {"tool": tool.name, "arguments": arguments, "problem": problem})
                request = await self._request(tool, arguments, rng)
                problem = accepts_call(tool, arguments)  # a repaired span must still fit the schema
                if problem:
                    raise Rejected("schema_invalid", {"tool": tool.name, "arguments": arguments, "problem": problem})
                self._order_check(tool, arguments, request)
                if self.plan.roundtrip != "off":
                    await self._roundtrip(tool, arguments, request, rng)
            except Rejected as rejection:
                if attempt == tries - 1:
                    raise
                self.stats.reject(rejection.reason, rejection.sample)
                continue
            self._shots[tool.name].append((arguments, request))
            return arguments, request
        raise AssertionError("unreachable")

    async def _request(self, tool: ToolDefinition, arguments: dict[str, Any], rng: random.Random) -> str:
        fixed = [(ex.arguments, ex.request) for ex in tool.examples[:3]]
        if not fixed:
            fixed = [(arguments, prompts.template_request(tool, arguments))]
        learned = self._shots[tool.name]
        shots = fixed + rng.sample(learned, k=min(2, len(learned)))
        text = await self._complete(
            prompts.request_prompt(tool, shots, arguments),
            family=f"request:{tool.name}",
            stop=["\n"],
            max_tokens=60,
            temperature=self.plan.temperature,
            top_p=self.plan.top_p,
            seed=rng.randrange(2**31),
        )
        request = verify.clean_line(text)
        problem = verify.request_problem(request)
        if problem:
            raise Rejected(problem, request)
        for name, value in list(arguments.items()):
            if is_free_text(tool.properties.get(name, {})) and isinstance(value, str):
                span = verify.ground_free_text(value, request)
                if span is not None:
                    arguments[name] = span  # the user's own words become the argument
        missing = verify.ungrounded_arguments(arguments, request)
        if missing:
            raise Rejected(
                "ungrounded", {"tool": tool.name, "request": request, "arguments": arguments, "missing": missing}
            )
        return request

    def _order_check(self, tool: ToolDefinition, arguments: dict[str, Any], request: str) -> None:
        problem = verify.enum_order_problem(tool.properties, arguments, request)
        if problem:
            raise Rejected("ambiguous_order", {"tool": tool.name, "request": request, "problem": problem})

    async def _roundtrip(
        self, tool: ToolDefinition, arguments: dict[str, Any], request: str, rng: random.Random
    ) -> None:
        """The teacher, given only the request, must produce the same call."""
        text = await self._complete(
            prompts.roundtrip_prompt(self.tools, request),
            family="roundtrip",
            max_tokens=120,
            temperature=0.0,
            json_schema=prompts.roundtrip_schema(self.tools),
        )
        try:
            got = json.loads(text)
        except json.JSONDecodeError:
            raise Rejected("roundtrip_unreadable", text) from None
        check = check_call(got, {"name": tool.name, "arguments": arguments}, tool.parameters)
        if self.plan.roundtrip == "name" and got.get("name") == tool.name:
            return
        if not check.valid:
            raise Rejected(
                "roundtrip_mismatch",
                {"tool": tool.name, "request": request, "expected": arguments, "got": got, "why": check.message},
            )

    async def _answer(self, tool: ToolDefinition, request: str, result: Any) -> str:
        text = await self._complete(
            prompts.answer_prompt(request, result), family="answer", stop=["\n"], max_tokens=60, temperature=0.2, seed=0
        )
        answer = verify.clean_line(text)
        problem = verify.answer_problem(answer, request, result)
        if problem:
            self.stats.notes[f"answer_fallback_{problem}"] += 1
            return prompts.fallback_answer(tool, result)
        return answer
