"""Score tool calling through llama.cpp: the base and each adapter on the same rows, in the same run.

Every assistant turn of a held-out conversation is a decision point, asked with the gold conversation
before it: a turn with calls expects those calls, a text turn expects no call. A row is right only when
all of its decision points are.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loraforge.chat.parsing import ParsedAnswer, parse_answer
from loraforge.concurrency import gather_or_cancel
from loraforge.constants import Metric
from loraforge.evaluators.error_analysis import failure_row
from loraforge.evaluators.exact_match import CallCheck, check_example

if TYPE_CHECKING:
    from loraforge.runtime.protocol import ChatClient


def _as_dict(arguments: Any) -> dict[str, Any]:
    return json.loads(arguments) if isinstance(arguments, str) else dict(arguments)


def decision_points(row: dict[str, Any]) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]]:
    """(prompt messages, expected calls) per assistant turn; [] expects text, None means "no answer key".

    Rows in the `loraforge eval` form ({"messages" up to the user turn, "tool_calls"}) have one point.
    """
    messages = row["messages"]
    if "tool_calls" in row or not any(m["role"] == "assistant" for m in messages):
        expected = row.get("tool_calls")
        calls = (
            None
            if expected is None
            else [
                {
                    "name": c["name"],
                    "arguments": _as_dict(c.get("arguments", {})),
                    **({"acceptable": c["acceptable"]} if "acceptable" in c else {}),
                }
                for c in expected
            ]
        )
        return [(messages, calls)]
    points: list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]] = []
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            calls = [
                {"name": c["function"]["name"], "arguments": _as_dict(c["function"]["arguments"])}
                for c in message.get("tool_calls") or []
            ]
            points.append((messages[:index], calls))
    return points


@dataclass
class RowResult:
    """One row's answers and verdicts; `final_text` is the model's last text answer, for the judge."""

    index: int
    answers: list[ParsedAnswer] = field(default_factory=list)
    expected: list[list[dict[str, Any]] | None] = field(default_factory=list)
    checks: list[CallCheck | None] = field(default_factory=list)

    @property
    def scored(self) -> bool:
        return all(check is not None for check in self.checks)

    @property
    def correct(self) -> bool:
        return all(check is not None and check.valid for check in self.checks)

    @property
    def first_failure(self) -> tuple[int, CallCheck] | None:
        for turn, check in enumerate(self.checks):
            if check is not None and not check.valid:
                return turn, check
        return None

    @property
    def final_text(self) -> str:
        return self.answers[-1].text if self.answers else ""

    def record(self, row_id: Any) -> dict[str, Any]:
        failure = self.first_failure
        return {
            "id": row_id,
            "tool_calls": self.answers[0].calls if self.answers else [],
            "turns": [{"tool_calls": a.calls, "text": a.text} for a in self.answers],
            "expected": self.expected[0] if self.expected else None,
            "correct": self.correct if self.scored else None,
            "error": str(failure[1].error) if failure else None,
            "message": failure[1].message if failure else "",
        }


def schemas_of(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["function"]["name"]: t["function"].get("parameters", {}) for t in row.get("tools") or []}


async def evaluate_rows(
    client: ChatClient,
    rows: list[dict[str, Any]],
    *,
    adapter: int | None,
    max_tokens: int = 256,
    on_done: Callable[[], None] | None = None,
) -> list[RowResult]:
    """Greedy answers at every decision point of every row, checked by exact match."""

    async def one(index: int, row: dict[str, Any]) -> RowResult:
        result = RowResult(index)
        for prompt, expected in decision_points(row):
            reply = await client.chat(
                prompt, tools=row.get("tools"), adapter=adapter, temperature=0.0, max_tokens=max_tokens, seed=0
            )
            answer = parse_answer(reply.content, reply.tool_calls)
            result.answers.append(answer)
            result.expected.append(expected)
            result.checks.append(None if expected is None else check_example(answer, expected, schemas_of(row)))
        if on_done:
            on_done()
        return result

    return await gather_or_cancel(*(one(i, row) for i, row in enumerate(rows)))


def summarise(results: list[RowResult], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """exact_match counts a row right only when every call's name and every argument are right."""
    scored = [r for r in results if r.scored]
    n = len(scored)
    if n == 0:
        return {"n": 0, Metric.EXACT_MATCH.value: None}
    names_ok = 0
    per_tool: dict[str, list[bool]] = defaultdict(list)
    per_style: dict[str, list[bool]] = defaultdict(list)
    for result in scored:
        row = rows[result.index]
        # Names as multisets per turn: parallel calls count in any order, as exact match does. An unreadable
        # answer where no call was expected is a no-call, as on the leaderboard.
        names_ok += all(
            Counter(c["name"] for c in a.calls) == Counter(c["name"] for c in e) and (not a.malformed or not e)
            for a, e in zip(result.answers, [e or [] for e in result.expected])
        )
        for name in {c["name"] for turn in result.expected for c in turn or []} or {"(no call)"}:
            per_tool[name].append(result.correct)
        per_style[row.get("meta", {}).get("style", "single")].append(result.correct)
    errors = Counter(str(r.first_failure[1].error) for r in scored if r.first_failure)
    return {
        "n": n,
        Metric.EXACT_MATCH.value: sum(r.correct for r in scored) / n,
        Metric.TOOL_NAME_ACCURACY.value: names_ok / n,
        "errors": dict(errors.most_common()),
        "per_tool": {k: sum(v) / len(v) for k, v in sorted(per_tool.items())},
        "per_style": {k: sum(v) / len(v) for k, v in sorted(per_style.items())},
    }


def failures(results: list[RowResult], rows: list[dict[str, Any]], ids: list[Any] | None = None) -> list[dict]:
    """Error-analysis rows: one per failed example, with its prompt, expected and predicted calls."""
    out = []
    for result in results:
        failure = result.first_failure
        if failure is None:
            continue
        turn, check = failure
        prompt = decision_points(rows[result.index])[turn][0]
        out.append(
            failure_row(
                prompt=next((m["content"] for m in reversed(prompt) if m["role"] == "user"), ""),
                expected=result.expected[turn],
                predicted=result.answers[turn].calls or result.answers[turn].text,
                error=str(check.error),
                tool=check.tool,
                param=check.param,
                message=check.message,
                example_id=ids[result.index] if ids else result.index,
            )
        )
    return out
