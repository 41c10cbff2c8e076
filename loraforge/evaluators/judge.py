"""An LLM judge through llama.cpp: absolute 1-10 scores and pairwise verdicts, output constrained to JSON.

A judge is a noisy instrument, so pairwise comparisons are judged in both orders and a win counts only
when both orders agree, and the report states how often the judge agrees with exact match.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loraforge.evaluators.evaluate import Evaluation
    from loraforge.runtime.protocol import ChatClient

SCORE_SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "reason": {"type": "string", "maxLength": 160},
    },
    "required": ["score", "reason"],
}
PAIR_SCHEMA = {
    "type": "object",
    "properties": {"better": {"enum": ["A", "B", "tie"]}, "reason": {"type": "string", "maxLength": 160}},
    "required": ["better", "reason"],
}
RUBRIC = (
    "You grade an assistant's final answer to a user, given the tool results it received. Score 1 to 10: "
    "10 = correct, states the key facts from the tool results, answers the request, concise; "
    "5 = partly correct or vague; 1 = wrong, invented facts, or no answer. Reply in JSON."
)


def _case(request: str, results: list[str]) -> str:
    return f"User request: {request}\nTool results: {' | '.join(results) if results else '(none)'}"


async def score_answer(client: ChatClient, request: str, results: list[str], answer: str) -> dict[str, Any]:
    """{"score": 1-10, "reason": ...}; a judge answer that cannot be read scores None."""
    messages = [
        {"role": "system", "content": RUBRIC},
        {"role": "user", "content": f"{_case(request, results)}\nAssistant's answer: {answer or '(empty)'}"},
    ]
    reply = await client.chat(messages, json_schema=SCORE_SCHEMA, temperature=0.0, max_tokens=120)
    try:
        verdict = json.loads(reply.content)
        return {"score": int(verdict["score"]), "reason": str(verdict.get("reason", ""))}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return {"score": None, "reason": f"unreadable judge output: {reply.content[:80]!r}"}


async def _prefer(client: ChatClient, request: str, results: list[str], first: str, second: str) -> str:
    messages = [
        {"role": "system", "content": RUBRIC.replace("Score 1 to 10", "Say which answer is better (A or B, or tie)")},
        {
            "role": "user",
            "content": f"{_case(request, results)}\nAnswer A: {first or '(empty)'}\nAnswer B: {second or '(empty)'}",
        },
    ]
    reply = await client.chat(messages, json_schema=PAIR_SCHEMA, temperature=0.0, max_tokens=120)
    try:
        return json.loads(reply.content)["better"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return "tie"


async def compare(client: ChatClient, request: str, results: list[str], base: str, adapter: str) -> str:
    """'adapter', 'base' or 'tie': judged with each answer first; a win needs both orders to agree."""
    forward = await _prefer(client, request, results, base, adapter)  # A = base
    backward = await _prefer(client, request, results, adapter, base)  # A = adapter
    if forward == "B" and backward == "A":
        return "adapter"
    if forward == "A" and backward == "B":
        return "base"
    return "tie"


def agreement(scores: list[int | None], correct: list[bool], passing: int = 6) -> float | None:
    """Share of examples where the judge's pass (score >= passing) matches exact match."""
    pairs = [(s >= passing, c) for s, c in zip(scores, correct) if s is not None]
    if not pairs:
        return None
    return sum(judged == exact for judged, exact in pairs) / len(pairs)


def summarise_judgements(scores: dict[str, list[int | None]], verdicts: list[str]) -> dict[str, Any]:
    def mean(values: list[int | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    return {
        "mean_score": {model: mean(values) for model, values in scores.items()},
        "pairwise": {k: verdicts.count(k) for k in ("adapter", "base", "tie")},
        "pairwise_rule": "judged in both orders; a win counts only when both orders agree",
    }


def judged_cases(rows: list[dict[str, Any]]) -> list[int]:
    """The rows that end in a final answer after tool results: the ones the judge scores."""
    return [i for i, row in enumerate(rows) if row["messages"][-1]["role"] == "assistant"]


async def judge_final_answers(
    client: ChatClient,
    rows: list[dict[str, Any]],
    evaluations: dict[str, Evaluation],
    on_done: Any = None,
) -> dict[str, Any]:
    """The base's and the adapter's final answers (from their `evaluations` on `rows`) scored 1-10 and
    compared pairwise, with how often the judge agrees with exact match."""
    answers = {label: evaluations[label].final_texts() for label in ("base", "adapter")}
    correct = {label: evaluations[label].correct for label in ("base", "adapter")}
    cases = judged_cases(rows)
    scores: dict[str, list[int | None]] = {label: [] for label in ("base", "adapter")}
    verdicts: list[str] = []
    for index in cases:
        row = rows[index]
        request = next(m["content"] for m in row["messages"] if m["role"] == "user")
        results = [m["content"] for m in row["messages"] if m["role"] == "tool"]
        given = {label: answers[label][index] for label in scores}
        for label, answer in given.items():
            scores[label].append((await score_answer(client, request, results, answer))["score"])
        verdicts.append(await compare(client, request, results, given["base"], given["adapter"]))
        if on_done:
            on_done()
    summary = summarise_judgements(scores, verdicts)
    summary["agreement_with_exact_match"] = {
        label: agreement(scores[label], [bool(correct[label][i]) for i in cases]) for label in scores
    }
    return summary
