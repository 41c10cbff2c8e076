"""Score tool calling through llama.cpp: the base and each adapter on the same rows, in the same run."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loraforge.evaluators.exact_match import CallCheck, check_example
from loraforge.evaluators.parsing import ParsedAnswer, parse_answer
from loraforge.runtime.client import LlamaClient


def eval_turn(row: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The prompt (messages before the first assistant turn) and the expected calls of that turn."""
    messages = row["messages"]
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            expected = [
                {"name": c["function"]["name"], "arguments": _as_dict(c["function"]["arguments"])}
                for c in message.get("tool_calls") or []
            ]
            return messages[:index], expected
    return messages, list(row.get("expected_calls", []))


def _as_dict(arguments: Any) -> dict[str, Any]:
    import json

    return json.loads(arguments) if isinstance(arguments, str) else dict(arguments)


@dataclass(frozen=True)
class Prediction:
    index: int
    answer: ParsedAnswer
    expected: list[dict[str, Any]]
    check: CallCheck

    def record(self, row_id: Any) -> dict[str, Any]:
        return {
            "id": row_id,
            "tool_calls": self.answer.calls,
            "text": self.answer.text,
            "expected": self.expected,
            "correct": self.check.valid,
            "error": str(self.check.error) if self.check.error else None,
            "message": self.check.message,
        }


def schemas_of(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["function"]["name"]: t["function"].get("parameters", {}) for t in row.get("tools") or []}


async def predict(
    client: LlamaClient,
    rows: list[dict[str, Any]],
    *,
    adapter: int | None,
    max_tokens: int = 256,
    on_done: Callable[[], None] | None = None,
) -> list[Prediction]:
    """Greedy answers for every row, with the tools the row carries, checked by exact match."""

    async def one(index: int, row: dict[str, Any]) -> Prediction:
        prompt, expected = eval_turn(row)
        result = await client.chat(
            prompt, tools=row.get("tools"), adapter=adapter, temperature=0.0, max_tokens=max_tokens, seed=0
        )
        answer = parse_answer(result.content, result.tool_calls)
        check = check_example(answer, expected, schemas_of(row))
        if on_done:
            on_done()
        return Prediction(index, answer, expected, check)

    return list(await asyncio.gather(*(one(i, row) for i, row in enumerate(rows))))


def summarise(predictions: list[Prediction]) -> dict[str, Any]:
    """exact_match counts an example right only when every call's name and every argument are right."""
    n = len(predictions)
    if n == 0:
        return {"n": 0, "exact_match": 0.0}
    name_ok = sum(
        1
        for p in predictions
        if [c["name"] for c in p.answer.calls] == [c["name"] for c in p.expected] and not p.answer.malformed
    )
    errors = Counter(str(p.check.error) for p in predictions if p.check.error)
    return {
        "n": n,
        "exact_match": sum(p.check.valid for p in predictions) / n,
        "tool_name_accuracy": name_ok / n,
        "errors": dict(errors.most_common()),
    }
