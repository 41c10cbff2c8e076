"""Completion-style few-shot prompts for a small teacher model (pure functions).

A 135M teacher ignores chat instructions but continues a list well, so every prompt is a list whose next
item is the wanted output. Fixed parts come first and varying parts last, so that llama.cpp can reuse the
cached prefix from one request to the next.
"""

from __future__ import annotations

import json
import random
from typing import Any

from loraforge.tools.definition import ToolDefinition


def describe_values(arguments: dict[str, Any]) -> str:
    """`city=Paris, unit=celsius`: how values are shown to the teacher."""
    return ", ".join(f"{key}={plain(value)}" for key, value in arguments.items())


def plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def template_request(tool: ToolDefinition, arguments: dict[str, Any]) -> str:
    """A plain sentence built from the tool's own words: the bootstrap shot for tools without examples."""
    action = tool.description.strip().rstrip(".")
    action = action[0].lower() + action[1:] if action else tool.name.replace("_", " ")
    details = ", ".join(f"{key.replace('_', ' ')} {plain(value)}" for key, value in arguments.items())
    return f"Please {action}: {details}." if details else f"Please {action}."


def request_prompt(tool: ToolDefinition, shots: list[tuple[dict[str, Any], str]], arguments: dict[str, Any]) -> str:
    """Ask for a user request that states exactly these values."""
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
]


def answer_prompt(request: str, result: Any) -> str:
    """Ask for the assistant's short final answer, given the request and the tool's result."""
    lines = ["An assistant tells the user what a tool returned, in one short friendly sentence.", ""]
    for shot_request, shot_result, answer in _ANSWER_SHOTS:
        lines += [f"Request: {shot_request}", f"Result: {json.dumps(shot_result)}", f"Answer: {answer}", ""]
    lines += [f"Request: {request}", f"Result: {json.dumps(result, ensure_ascii=False)}", "Answer:"]
    return "\n".join(lines)


def fallback_answer(tool: ToolDefinition, result: Any) -> str:
    """A plain sentence from the result, used when the teacher's answer is not grounded."""
    if isinstance(result, dict) and result:
        facts = ", ".join(f"{key.replace('_', ' ')} {plain(value)}" for key, value in list(result.items())[:4])
        return f"Done. The {tool.name.replace('_', ' ')} tool returned {facts}."
    return f"Done. The {tool.name.replace('_', ' ')} tool returned {plain(result)}."


def roundtrip_prompt(tools: list[ToolDefinition], request: str) -> str:
    """Ask the teacher to turn a request into a call, shown one worked call per tool."""
    lines = ["Function calls that an assistant made for user requests."]
    for tool in tools:
        for example in tool.examples[:2]:
            call = {"name": tool.name, "arguments": example.arguments}
            lines += [f"Request: {example.request}", f"Call: {json.dumps(call, ensure_ascii=False)}"]
    lines += [f"Request: {request}", "Call:"]
    return "\n".join(lines)


def roundtrip_schema(tools: list[ToolDefinition]) -> dict[str, Any]:
    """One call to any of these tools, with arguments valid for that tool."""
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
                "required": ["name", "arguments"],
            }
            for tool in tools
        ]
    }


NO_CALL_SEEDS = [
    "Tell me a joke about cats.",
    "What is the capital of Australia?",
    "Can you explain what photosynthesis is?",
    "Write a two-line poem about the sea.",
    "How do I say thank you in Japanese?",
    "What's a good name for a goldfish?",
    "Why is the sky blue?",
    "Give me a tip for staying focused while studying.",
    "hi there! how are you doing?",
    "Summarize the plot of Romeo and Juliet in one sentence.",
]


def no_call_prompt(shots: list[str]) -> str:
    """Ask for a request that needs no tool: chit-chat, knowledge, writing."""
    lines = ["Messages that users sent to a chat assistant: questions, greetings and small writing tasks."]
    lines += [f"- {shot}" for shot in shots]
    lines.append("-")
    return "\n".join(lines)


# Surface variation that keeps every value intact: the register of the request, not its content.
_OPENERS = ["", "", "", "hey, ", "Hi! ", "Quick question: ", "Please, ", "Could you help? ", "ok so "]
_CLOSERS = ["", "", "", " Thanks!", " thanks", " Cheers."]
PARALLEL_JOINERS = ["{a} Also, {b}", "{a} And {b}", "Two things: {a} {b}", "{a} Plus, {b}"]
CHAIN_JOINERS = ["{a} Then {b}", "First, {a} After that, {b}", "{a} Once that's done, {b}", "{a} Next, {b}"]


def vary_register(text: str, rng: random.Random) -> str:
    """Casual or polite openers and closers, sometimes all lower case: values are untouched."""
    opener, closer = rng.choice(_OPENERS), rng.choice(_CLOSERS)
    if opener.lower().rstrip(", ").split()[-1:] == text.lower().split()[:1]:
        opener = ""  # no "Please, please ..."
    if opener.endswith(", ") and text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    if text[-1:] not in ".?!":
        closer = ""
    styled = f"{opener}{text}{closer}".strip()
    if rng.random() < 0.15:
        styled = styled.lower()
    return styled


def join_requests(first: str, second: str, joiners: list[str], rng: random.Random) -> str:
    def sentence(text: str) -> str:
        text = text.strip()
        return text if text[-1:] in ".?!" else text + "."

    b = sentence(second)
    return rng.choice(joiners).format(a=sentence(first), b=b[0].lower() + b[1:])


def label_item_prompt(label: str, description: str, shots: list[str]) -> str:
    """Ask for one new text that carries this label."""
    about = f" ({description})" if description else ""
    lines = [f"Short texts, each one labeled {label!r}{about}:"]
    lines += [f"- {' '.join(shot.split())}" for shot in shots]
    lines.append("-")
    return "\n".join(lines)


def label_check_prompt(shots: list[tuple[str, str]], item: str) -> str:
    """Ask the teacher to classify an item, with labeled shots from every label."""
    lines = ["Texts and their labels."]
    for text, label in shots:
        lines += [f"Text: {' '.join(text.split())}", f"Label: {json.dumps(label)}"]
    lines += [f"Text: {' '.join(item.split())}", "Label:"]
    return "\n".join(lines)
