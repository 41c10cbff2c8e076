"""Completion-style few-shot prompts for a small teacher model (pure functions).

A 135M teacher ignores chat instructions but continues a list well, so every prompt is a list whose next
item is the wanted output (see the measured facts in the project's reference notes).
"""

from __future__ import annotations

import json
import random
from typing import Any

from loraforge.tools.definition import ToolDefinition


def describe_values(arguments: dict[str, Any]) -> str:
    """`city=Paris, unit=celsius`: how values are shown to the teacher."""
    return ", ".join(f"{key}={_plain(value)}" for key, value in arguments.items())


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def arguments_prompt(tool: ToolDefinition, shots: list[dict[str, Any]]) -> str:
    """Ask for a new, realistic argument object; the output is constrained to the parameters schema."""
    lines = [f"Realistic argument objects for the tool {tool.name} ({tool.description.strip()}):"]
    lines += [json.dumps(shot, ensure_ascii=False) for shot in shots]
    return "\n".join(lines) + "\n"


def request_prompt(tool: ToolDefinition, shots: list[tuple[dict[str, Any], str]], arguments: dict[str, Any]) -> str:
    """Ask for a user request that mentions exactly these values."""
    lines = [
        "Requests that users typed to an assistant, with the values they mention, "
        f"for the tool {tool.name} ({tool.description.strip()}):"
    ]
    lines += [f"- {describe_values(args)}: {text}" for args, text in shots]
    lines.append(f"- {describe_values(arguments)}:")
    return "\n".join(lines)


_ANSWER_SHOTS = [
    (
        "What's the weather in Rome?",
        {"city": "Rome", "temperature": 24, "condition": "sunny"},
        "It is 24 degrees and sunny in Rome right now.",
    ),
    (
        "Book a table for two at Luigi's at 8pm.",
        {"booking_id": 5521, "status": "confirmed"},
        "Your table for two at Luigi's is confirmed for 8pm (booking 5521).",
    ),
    ("How many steps did I walk today?", {"steps": 8412}, "You walked 8412 steps today."),
    (
        "Find me a flight to Oslo.",
        {"results": [{"airline": "SAS", "price": 129}]},
        "The best option I found is an SAS flight to Oslo for 129.",
    ),
]


def answer_prompt(request: str, result: Any, rng: random.Random) -> str:
    """Ask for the assistant's short final answer, given the request and the tool's result."""
    shots = rng.sample(_ANSWER_SHOTS, k=3)
    lines = ["An assistant tells the user what a tool returned, in one short friendly sentence.", ""]
    for shot_request, shot_result, answer in shots:
        lines += [
            f"Request: {shot_request}",
            f"Result: {json.dumps(shot_result, ensure_ascii=False)}",
            f"Answer: {answer}",
            "",
        ]
    lines += [f"Request: {request}", f"Result: {json.dumps(result, ensure_ascii=False)}", "Answer:"]
    return "\n".join(lines)


def fallback_answer(tool: ToolDefinition, result: Any) -> str:
    """A plain sentence from the result, used when the teacher's answer is not grounded."""
    if isinstance(result, dict) and result:
        facts = ", ".join(f"{key.replace('_', ' ')} {_plain(value)}" for key, value in list(result.items())[:4])
        return f"Done. The {tool.name.replace('_', ' ')} tool returned {facts}."
    return f"Done. The {tool.name.replace('_', ' ')} tool returned {_plain(result)}."
