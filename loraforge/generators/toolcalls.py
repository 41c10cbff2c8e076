"""Synthetic tool-calling conversations in five styles, verified before use.

Styles: single (one call), multiple (one call chosen among several tools), parallel (two calls in one
turn, "X. Also, Y"), chain (two requests in sequence, "X. Then Y"; the calls are independent, so both are
made in the first turn) and no_call (no tool fits; answer in text).
Every tool gets its share of examples (a quota, like the styles'), and a tool that the teacher cannot
write for is reported by name with its rejections. Each call's arguments come from the value model; the
teacher, shown people's requests from the built-in bank (or the tool's own examples), writes a request
that states them. Checks reject what is off-schema, implausible, copied from a description, labelled with
a parameter name, ungrounded, not matched by its call, not recoverable by the teacher (round trip) or too
close to a request already kept. Rejections are counted by reason and by tool.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from typing import Any

from loraforge.concurrency import examples_by_index
from loraforge.evaluators.exact_match import Leniency, check_call
from loraforge.generators import compose, prompts, realism, restate, shots, values, verify
from loraforge.generators.arguments import ArgumentDrafter, is_free_text
from loraforge.generators.bank import load_bank, role_prefix
from loraforge.generators.dedup import NearDuplicateIndex, rouge_l
from loraforge.generators.plan import STYLES, GenerationPlan
from loraforge.generators.stats import GenerationStats, coverage_message
from loraforge.generators.verify import Rejected
from loraforge.runtime.protocol import ChatClient
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


def no_call_seeds() -> list[str]:
    """The built-in requests that no tool serves (package data)."""
    from importlib import resources

    text = resources.files("loraforge.generators").joinpath("data/no_call.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def present_tools(
    tools: list[ToolDefinition], needed: list[ToolDefinition], at_least: int, full_rate: float, rng: random.Random
) -> list[dict[str, Any]]:
    """The tools a row shows in its prompt: every tool (a `full_rate` share of rows), or the needed ones plus
    distractors, at least `at_least` in all."""
    if rng.random() < full_rate or at_least >= len(tools):
        chosen = list(tools)
    else:
        others = [t for t in tools if t not in needed]
        extra = rng.randint(max(0, at_least - len(needed)), max(0, min(len(others), at_least + 1 - len(needed))))
        picked = {t.name for t in needed + rng.sample(others, k=min(extra, len(others)))}
        # Tools keep the file's order: rows showing the same tools then share their whole system prompt,
        # which training computes once per batch.
        chosen = [t for t in tools if t.name in picked]
    return [t.to_openai() for t in chosen]


class ToolCallGenerator:
    """Makes verified tool-calling examples; concurrency is bounded by the client's request slots."""

    def __init__(
        self,
        tools: list[ToolDefinition],
        client: ChatClient,
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
        self._shots: dict[str, list[prompts.Shot]] = {t.name: [] for t in tools}  # kept requests per tool
        self._first_request: dict[str, str] = {}
        self._no_call_seeds = no_call_seeds()
        self._no_call_shots: list[str] = []
        self._teacher_calls = 0
        self.on_warning: Callable[[str], None] | None = None  # told when a tool keeps failing
        self._warned: set[str] = set()
        self._assigned: Counter = Counter()
        self._tool_assigned: Counter = Counter()
        for tool in tools:
            for example in tool.examples:
                self.dedup.add(example.request, force=True)
        # Seeds never come back as training data: generated text must not come near them either.
        for entry in load_bank():
            self.dedup.add(entry.request, force=True)
        for text in self._no_call_seeds:
            self.dedup.add(text, force=True)

    # ---- driving ------------------------------------------------------------------------------

    def remember(self, rows: list[dict[str, Any]]) -> None:
        """Rows kept by an earlier, interrupted generation: they count for near-duplicates and shares."""
        for row in rows:
            self.dedup.add(row["messages"][0]["content"], force=True)
            self.stats.accept(row)
            self._assigned[row["meta"].get("style", "single")] += 1
            for name in row["meta"].get("tools_called", []):
                self._tool_assigned[name] += 1

    async def generate(
        self, indices: list[int], on_example: Callable[[dict[str, Any]], None] | None = None
    ) -> list[dict[str, Any]]:
        """One example per index; the same index always starts from the same seed."""
        results = await examples_by_index(self._example, indices, on_example)
        self.stats.teacher_calls = self.drafter.teacher_calls + self._teacher_calls
        self.stats.implausible_samples = self.drafter.implausible[:20]
        self.stats.notes["implausible_pool_values"] = len(self.drafter.implausible)
        return results

    def uncovered(self) -> list[str]:
        """Tools with no kept example so far."""
        return [t.name for t in self.tools if self.stats.per_tool[t.name] == 0]

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
            picked: list[str] = []
            try:
                if style == "no_call":
                    row = await self._no_call(rng)
                elif style in ("parallel", "chain"):
                    row = await self._pair(rng, style, target, picked)
                else:
                    row = await self._single(rng, style, target, picked)
                request = row["messages"][0]["content"]
                if self.dedup.is_duplicate(request):
                    raise Rejected("near_duplicate", {"request": request, "tool": picked[0] if picked else None})
                self.dedup.add(request, force=True)
            except Rejected as rejection:
                self.stats.reject(rejection.reason, rejection.sample)
                for name in picked:
                    self._tool_assigned[name] -= 1
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

    def _pick_tool(self, rng: random.Random, picked: list[str], exclude: Collection[str] = ()) -> ToolDefinition:
        """Coverage first: a tool below 80% of the mean number of examples per tool (weighted) goes first,
        the least tried of them first, so that a hard tool gets its attempts without eating them all; when
        every tool has its share, the one furthest below its weighted share. Ties break at random."""
        names = [t.name for t in self.tools if t.name not in exclude] or [t.name for t in self.tools]
        weights = {n: max(1e-6, self.plan.tool_weights.get(n, 1.0)) for n in names}
        total = sum(weights.values())
        share = {n: weights[n] / total for n in names}
        kept = {n: self._tool_assigned[n] / share[n] for n in names}  # kept and in flight, per unit share
        mean = sum(kept.values()) / len(kept)
        behind = [n for n in names if kept[n] < 0.8 * mean or kept[n] == 0]
        if behind:
            name = min(behind, key=lambda n: (self.stats.tool_attempts[n] / share[n], rng.random()))
        else:
            name = min(names, key=lambda n: (kept[n], rng.random()))
        self._tool_assigned[name] += 1
        picked.append(name)
        return self.by_name[name]

    def _present(self, rng: random.Random, needed: list[ToolDefinition], at_least: int) -> list[dict[str, Any]]:
        return present_tools(self.tools, needed, at_least, self.plan.full_tool_list_rate, rng)

    async def _single(self, rng: random.Random, style: str, target: dict | None, picked: list[str]) -> dict[str, Any]:
        like = None
        if target:
            (first,) = expected_calls(target)[0][:1]
            tool, like = self.by_name[first["name"]], first["arguments"]
            picked.append(tool.name)
            self._tool_assigned[tool.name] += 1
        else:
            tool = self._pick_tool(rng, picked)
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

    async def _pair(self, rng: random.Random, style: str, target: dict | None, picked: list[str]) -> dict[str, Any]:
        if target:
            calls = [c for turn in expected_calls(target) for c in turn][:2]
            picks = [(self.by_name[c["name"]], c["arguments"]) for c in calls]
            for tool, _ in picks:
                picked.append(tool.name)
                self._tool_assigned[tool.name] += 1
        else:
            first = self._pick_tool(rng, picked)
            if style == "parallel" and rng.random() < 0.4:
                second = first
                picked.append(first.name)
                self._tool_assigned[first.name] += 1
            else:
                second = self._pick_tool(rng, picked, {first.name})
            picks = [(first, None), (second, None)]
        parts: list[tuple[ToolDefinition, dict[str, Any], str, Any]] = []
        for tool, like in picks:
            arguments, request = await self._call_and_request(tool, rng, like)
            if parts and arguments == parts[0][1]:
                raise Rejected("repeated_call", {"tool": tool.name, "arguments": arguments})
            result = simulate_response(tool, arguments, rng.randrange(2**31))
            parts.append((tool, arguments, request, result))
        joiners = prompts.PARALLEL_JOINERS if style == "parallel" else prompts.CHAIN_JOINERS
        request = prompts.join_requests(parts[0][2], parts[1][2], joiners, rng)
        answers = [await self._answer(tool, req, result) for tool, _, req, result in parts]
        # Both calls go in one turn, in chains too: neither needs the other's result, so a model that waits
        # for the first result before making the second costs its user a round trip, and the leaderboard
        # (and loraforge eval) expects both calls in the first turn ("parallel multiple").
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": prompts.vary_register(request, rng)},
            call_message([(tool.name, args) for tool, args, _, _ in parts]),
            *[tool_message(result) for *_, result in parts],
            {"role": "assistant", "content": " ".join(answers)},
        ]
        needed = list({tool.name: tool for tool, *_ in parts}.values())
        return {
            "messages": messages,
            "tools": self._present(rng, needed, 3),
            "meta": {"style": style, "tools_called": [tool.name for tool, *_ in parts]},
        }

    async def _no_call(self, rng: random.Random) -> dict[str, Any]:
        shots = rng.sample(self._no_call_seeds, k=min(5, len(self._no_call_seeds)))
        shots += rng.sample(self._no_call_shots, k=min(2, len(self._no_call_shots)))
        text = await self._complete(
            prompts.no_call_prompt(shots),
            family="no_call",
            stop=["\n"],
            max_tokens=40,
            temperature=self.plan.temperature,
            top_p=self.plan.top_p,
            seed=rng.randrange(2**31),
        )
        request = verify.clean_line(text).lstrip("- ").strip()
        problem = verify.request_problem(request)
        if problem:
            raise Rejected(problem, request)
        for tool in self.tools:
            references = [tool.description] + [ex.request for ex in tool.examples]
            topic = prompts.tool_topic(tool)
            if (
                topic in request.lower()
                or realism.mentions_tool(request, tool)
                or max(rouge_l(request, r) for r in references) > 0.5
            ):
                raise Rejected("no_call_looks_like_a_tool_request", {"request": request, "tool": tool.name})
        kind = prompts.no_call_kind(request)
        if kind == "creative":
            reply = await self.client.chat(
                [{"role": "user", "content": request}], max_tokens=80, temperature=0.3, seed=rng.randrange(2**31)
            )
            self._teacher_calls += 1
            answer = verify.first_sentences(reply.content, 3)
            if len(answer) < 4 or "<tool_call>" in answer:
                raise Rejected("no_call_bad_answer", {"request": request, "answer": reply.content[:200]})
        else:  # facts from a small teacher are often invented: the reply stays short and honest
            answer = prompts.honest_reply(kind, rng)
        self._no_call_shots.append(request)
        messages = [{"role": "user", "content": request}, {"role": "assistant", "content": answer}]
        presented = self._present(rng, [], rng.randint(1, 3))
        return {
            "messages": messages,
            "tools": presented,
            "meta": {"style": "no_call", "tools_called": [], "reply": kind},
        }

    # ---- building blocks ----------------------------------------------------------------------

    async def _call_and_request(
        self, tool: ToolDefinition, rng: random.Random, like: dict[str, Any] | None = None, tries: int = 3
    ) -> tuple[dict[str, Any], str]:
        """Arguments and a verified request for them; a failed request is retried with new values."""
        models = self.drafter.models(tool)
        for attempt in range(tries):
            self.stats.tool_attempts[tool.name] += 1
            self._warn_if_stuck(tool.name)
            if like is None:
                rates = {name: self._optional_rate(tool.name, name) for name in tool.properties}
                arguments = await self.drafter.draft(tool, rng, optional_rate=rates)
            else:
                arguments = await self.drafter.draft(tool, rng, like=like)
            try:
                self._check_call(tool, models, arguments)
                request = await self._request(tool, arguments, rng)
                self._check_call(tool, models, arguments)  # a repaired span must still fit
                if self.plan.roundtrip != "off":
                    await self._roundtrip(tool, arguments, request, rng)
            except Rejected as rejection:
                if attempt == tries - 1:
                    raise
                self.stats.reject(rejection.reason, rejection.sample)
                continue
            self._first_request.setdefault(tool.name, request)
            return arguments, request
        raise AssertionError("unreachable")

    def _optional_rate(self, tool: str, param: str) -> float:
        """The plan's chance that an optional parameter appears, raised while the kept calls carry it less
        often than planned. A request that states more values fails verification more often, so unsteered
        data drops optional parameters (measured: a message body in 4 of 30 kept emails against 0.6 planned),
        and the adapter learns to drop them too."""
        target = self.plan.optional_rate(tool, param)
        share = self.stats.kept_share(tool, param)
        if share is None or share >= target:
            return target
        return min(0.95, 2 * target - share)

    def _warn_if_stuck(self, name: str, after: int = 30) -> None:
        if self.on_warning is None or name in self._warned or self.stats.per_tool[name]:
            return
        if self.stats.rejected_per_tool[name] >= after:  # finished attempts: many more may still be in flight
            self._warned.add(name)
            gap = self.stats.coverage([name])[0]
            self.on_warning(coverage_message(gap) + " Generation goes on; the tool keeps its share of attempts.")

    def _check_call(self, tool: ToolDefinition, models: dict[str, values.ParamModel], arguments: dict) -> None:
        problem = accepts_call(tool, arguments)
        if problem:
            raise Rejected("schema_invalid", {"tool": tool.name, "arguments": arguments, "problem": problem})
        for name, value in arguments.items():
            problem = values.plausible(models[name], value, tool.name)
            if problem:
                raise Rejected("implausible_value", {"tool": tool.name, "arguments": arguments, "problem": problem})

    def _details(self, tool: ToolDefinition, arguments: dict[str, Any], rng: random.Random) -> list[str]:
        """The call's values as a person says them, in an order that varies; "from"/"to" mark the roles of
        two values of one kind. With chance `plan.topic_rate` what the tool is about comes first."""
        models = self.drafter.models(tool)
        names = [n for n in arguments if not (isinstance(arguments[n], list) and not arguments[n])]
        if rng.random() < 0.5 and not any(role_prefix(n) for n in names):
            rng.shuffle(names)
        details = [role_prefix(n) + values.spoken(models[n], arguments[n], rng) for n in names]
        if rng.random() < self.plan.topic_rate:
            details.insert(0, rng.choice(prompts.topic_phrases(tool)))
        return details

    def _shots_for(self, tool: ToolDefinition, rng: random.Random) -> list[prompts.Shot]:
        """The tool's own examples where it has them, else bank requests on its topic rewritten with its
        values (`shots.py`); then up to two of this tool's kept requests."""
        models = self.drafter.models(tool)
        found: list[prompts.Shot] = []
        for example in tool.examples[:3]:
            spoken = [
                role_prefix(k) + values.spoken(models[k], v, rng) if k in models else prompts.plain(v)
                for k, v in example.arguments.items()
            ]
            found.append((spoken, example.request))
        if len(found) < 2:
            found += shots.shots_for_tool(tool, models, self.drafter.source, rng, k=3 - len(found))
        learned = self._shots[tool.name]
        found += rng.sample(learned, k=min(2, len(learned)))
        return found

    async def _request(self, tool: ToolDefinition, arguments: dict[str, Any], rng: random.Random) -> str:
        if rng.random() < self.plan.compose_rate:
            models = self.drafter.models(tool)
            text = compose.compose(tool.name, prompts.topic_phrases(tool), models, arguments, rng)
            if text is not None:
                self.stats.notes["composed_requests"] += 1
                return self._verify_request(tool, arguments, text, [], rng)
        details = self._details(tool, arguments, rng)
        found = self._shots_for(tool, rng)
        text = await self._complete(
            prompts.request_prompt(prompts.tool_topic(tool), found, details),
            family=f"request:{tool.name}",
            stop=["\n"],
            max_tokens=60,
            temperature=self.plan.temperature,
            top_p=self.plan.top_p,
            seed=rng.randrange(2**31),
        )
        request = verify.clean_line(text)
        mine = {d.lower() for d in details} | {p.lower() for p in prompts.topic_phrases(tool)}  # topics: no values
        shown = {d.split(" ", 1)[-1] if d.startswith(("from ", "to ")) else d for shot, _ in found for d in shot}
        kept = self._verify_request(tool, arguments, request, [d for d in shown if d.lower() not in mine], rng)
        if kept == request:  # a request with a restated value is not a shot: the teacher would copy the phrase
            self._shots[tool.name].append((details, request))
        return kept

    def _verify_request(
        self,
        tool: ToolDefinition,
        arguments: dict[str, Any],
        request: str,
        shown: Sequence[str] = (),
        rng: random.Random | None = None,
    ) -> str:
        """Every check a request must pass for its call; returns the request as kept. The call is then made
        to match the request: a loosely stated free-text value becomes the user's own words, and an optional
        value the request leaves out is either added to it as a short phrase (with chance
        `plan.restate_dropped`) or dropped from the call (a required one rejects the request)."""
        sample = {"tool": tool.name, "request": request, "arguments": dict(arguments)}
        problem = verify.request_problem(request)
        if problem:
            raise Rejected(problem, sample)
        copied = realism.copied_description(request, tool)
        if copied:
            raise Rejected("copied_description", {**sample, "copied": copied})
        models = self.drafter.models(tool)
        call = realism.CallInRequest(tool, models, arguments)
        stolen = realism.copied_values(request, shown, call)
        if stolen:
            raise Rejected("copied_shot_value", {**sample, "copied": stolen})
        for name, value in list(arguments.items()):
            if isinstance(value, str) and is_free_text(models[name]):
                span = verify.ground_free_text(value, request)
                if span is not None:
                    arguments[name] = verify.widen_to_quote(span, request)  # the user's own words
        for name, model in models.items():
            choice = realism.enum_choice_stated(request, model)
            if choice is not None and arguments.get(name) != choice:
                arguments[name] = choice  # the request says "by bike": the call says bicycling
                self.stats.notes["enum_set_from_request"] += 1
        required = set(tool.required)
        teacher_request, restated = request, []
        for name, value in list(arguments.items()):
            part = values.stated_part(models[name], value, request)
            if part is None and name in required:
                raise Rejected("ungrounded", {**sample, "missing": [name]})
            if part is None:
                word = realism.partly_stated(request, call, name)
                if word is not None:  # neither dropping nor restating the value would match the request
                    raise Rejected("unmatched_mention", {**sample, "unmatched": [word]})
            if part is None and rng is not None and rng.random() < self.plan.restate_dropped:
                extended = restate.restated(request, models[name], value, rng)
                if extended is not None:
                    request, part = extended, value
                    restated.append(name)
            if part is None:
                del arguments[name]
                self.stats.notes["dropped_unstated_optional"] += 1
            else:
                arguments[name] = part
        if not arguments and tool.properties:
            raise Rejected("ungrounded", {**sample, "missing": list(sample["arguments"])})
        if restated:
            # After a comma, a phrase can read as one more item of a list before it ("eggs, vegan"): then
            # the phrases go in a sentence of their own, and failing that the teacher's request is kept.
            for attempt in (request, self._as_sentences(teacher_request, restated, arguments, models, rng)):
                try:
                    if attempt is not None:
                        self._final_checks(attempt, arguments, call, sample)
                        self.stats.notes["restated_optional"] += len(restated)
                        return attempt
                except Rejected:
                    continue
            self.stats.notes["restate_reverted"] += 1
            request = teacher_request
            for name in restated:
                del arguments[name]
            if not arguments and tool.properties:
                raise Rejected("ungrounded", {**sample, "missing": list(sample["arguments"])})
        self._final_checks(request, arguments, call, sample)
        return request

    @staticmethod
    def _as_sentences(
        request: str, names: list[str], arguments: dict[str, Any], models: dict[str, values.ParamModel], rng
    ) -> str | None:
        for name in names:
            restated = restate.restated(request, models[name], arguments[name], rng, sentence=True)
            if restated is None:
                return None
            request = restated
        return request

    @staticmethod
    def _final_checks(
        request: str, arguments: dict[str, Any], call: realism.CallInRequest, sample: dict[str, Any]
    ) -> None:
        """The checks on the request as kept: no parameter name as a label (a repaired value may be
        labelled), nothing stated that the call lacks, and values of one kind told apart."""
        leak = realism.name_leak(request, arguments)
        if leak:
            raise Rejected("name_leak", {**sample, "leak": leak})
        unmatched = realism.unmatched_mentions(request, [call])
        if unmatched:
            raise Rejected("unmatched_mention", {**sample, "unmatched": unmatched})
        problem = realism.order_problem(request, call)
        if problem:
            raise Rejected("ambiguous_order", {**sample, "problem": problem})
        negated = realism.negated_value(request, call)
        if negated:
            raise Rejected("negated_value", {**sample, "negated": negated})

    async def _roundtrip(
        self, tool: ToolDefinition, arguments: dict[str, Any], request: str, rng: random.Random
    ) -> None:
        """The teacher, given only the request, must pick the same tool ('name') or make the same call."""
        if self.plan.roundtrip == "name":
            if len(self.tools) == 1:
                return
            shots = [(text, name) for name, text in self._first_request.items()]
            text = await self._complete(
                prompts.tool_choice_prompt(self.tools, request, shots),
                family="roundtrip",
                max_tokens=24,
                temperature=0.0,
                json_schema=prompts.tool_choice_schema(self.tools),
            )
            try:
                got_name = json.loads(text)
            except json.JSONDecodeError:
                raise Rejected("roundtrip_unreadable", {"tool": tool.name, "request": request, "got": text}) from None
            if got_name != tool.name:
                raise Rejected("roundtrip_mismatch", {"tool": tool.name, "request": request, "got": got_name})
            return
        calls = [(ex.request, {"name": t.name, "arguments": ex.arguments}) for t in self.tools for ex in t.examples[:2]]
        text = await self._complete(
            prompts.roundtrip_prompt(self.tools, request, calls),
            family="roundtrip",
            max_tokens=120,
            temperature=0.0,
            json_schema=prompts.roundtrip_schema(self.tools),
        )
        try:
            got = json.loads(text)
        except json.JSONDecodeError:
            raise Rejected("roundtrip_unreadable", {"tool": tool.name, "request": request, "got": text}) from None
        # The teacher may spell out a default or leave one out, or write 2 for 2.0: all recover the same call.
        lenient = Leniency(defaults=True, integers_in_number_arrays=True)
        check = check_call(got, {"name": tool.name, "arguments": arguments}, tool.parameters, lenient)
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
