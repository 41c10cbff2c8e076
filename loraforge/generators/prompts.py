"""Completion-style few-shot prompts for a small teacher model (pure functions).

A 135M teacher ignores chat instructions but continues a list well, so every prompt is a list whose next
item is the wanted output. Fixed parts come first and varying parts last, so that llama.cpp can reuse the
cached prefix from one request to the next.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from loraforge.generators import values
from loraforge.generators.phrasing import GENERIC_NAME_VERBS, split_name
from loraforge.tools.definition import ToolDefinition


def plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def tool_topic(tool: ToolDefinition) -> str:
    """What a tool is about, in words: `send_text_message` -> send text message; `get_current_weather` ->
    current weather (a generic verb says nothing a person would)."""
    words = split_name(tool.name)
    kept = [w for w in words if w not in GENERIC_NAME_VERBS] or words
    return " ".join(kept) or tool.name


def topic_phrases(tool: ToolDefinition) -> list[str]:
    """Ways to say what a tool is about, its own words first: `transfer_money` -> transfer money, send
    money, move money, money (the verbs people use for the name's first word, `name_verbs` in vocab.yaml)."""
    topic = tool_topic(tool)
    words = topic.split()
    synonyms = values.vocab().get("name_verbs", {}).get(words[0], []) if len(words) > 1 else []
    phrases = [topic] + [f"{verb} {' '.join(words[1:])}" for verb in synonyms]
    if synonyms:
        phrases.append(" ".join(words[1:]))  # the object alone: "money", "calendar event"
    return list(dict.fromkeys(phrases))


Shot = tuple[list[str], str]  # (the details as the request states them, the request)


def request_prompt(topic: str, shots: list[Shot], details: list[str]) -> str:
    """Ask for a request about `topic` that states these details, after requests for the same tool.

    The tool's description is never shown: a small teacher copies what it is shown, and people do not
    talk like API documentation."""
    lines = [f"Requests that people typed to their assistant about {topic}, each after the details it states.", ""]
    for shot_details, text in shots:
        lines += [f"Details: {', '.join(shot_details)}", f"Request: {text}", ""]
    lines += [f"Details: {', '.join(details)}", "Request:"]
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


_GREETING = re.compile(r"^(hi|hello|hey|good (morning|afternoon|evening)|yo|howdy)\b", re.IGNORECASE)
_THANKS = re.compile(r"\b(thanks|thank you|cheers|appreciate)\b", re.IGNORECASE)
_BYE = re.compile(r"\b(bye|goodbye|good night|see you|that's all|never mind|nevermind|cancel that)\b", re.IGNORECASE)
_CREATIVE = re.compile(
    r"\b(write|poem|haiku|limerick|joke|story|song|riddle|name (ideas|for)|names? for|slogan|toast|pun)\b",
    re.IGNORECASE,
)
_HONEST = [
    "None of my tools can look that up, and I'd rather not guess. Is there something I can do with them instead?",
    "I can't check that with the tools I have here, so I won't make up an answer.",
    "That's outside what my tools can do, and I don't want to give you a wrong answer.",
    "I don't have a tool for that, so I can't give you a reliable answer.",
    "Sorry, I can't answer that reliably with the tools available to me.",
]


def no_call_kind(request: str) -> str:
    """greeting, thanks, goodbye, creative (the teacher may write it) or question (answered honestly)."""
    if _THANKS.search(request):
        return "thanks"
    if _BYE.search(request):
        return "goodbye"
    if _GREETING.search(request.strip()) and len(request.split()) <= 8:
        return "greeting"
    if _CREATIVE.search(request):
        return "creative"
    return "question"


def honest_reply(kind: str, rng: random.Random) -> str:
    """A short reply that states no facts, for requests that no tool serves."""
    replies = {
        "thanks": ["You're welcome!", "Happy to help!", "Anytime!", "Glad I could help."],
        "goodbye": ["Okay, talk soon!", "Sure, just let me know if you need anything.", "Bye for now!"],
        "greeting": ["Hi! How can I help you today?", "Hello! What can I do for you?", "Hey! What do you need?"],
    }
    return rng.choice(replies.get(kind, _HONEST))


def fallback_answer(tool: ToolDefinition, result: Any) -> str:
    """A plain sentence from the result, used when the teacher's answer is not grounded."""
    if isinstance(result, dict) and result:
        facts = [plain(v) for k, v in result.items() if k != "status" and not isinstance(v, (dict, list))][:4]
        if result.get("status") == "ok":
            return f"Done ({tool_topic(tool)}: {', '.join(facts)})." if facts else "Done."
        facts = [f"{' '.join(split_name(k))}: {plain(v)}" for k, v in list(result.items())[:4]]
        return f"Here is what I found: {'; '.join(facts)}."
    return f"Here is what I found: {plain(result)}."


def roundtrip_prompt(tools: list[ToolDefinition], request: str, shots: list[tuple[str, dict[str, Any]]]) -> str:
    """Ask the teacher to turn a request into a call, shown one worked call per tool where there is one."""
    lines = ["Function calls that an assistant made for user requests."]
    for text, call in shots:
        lines += [f"Request: {text}", f"Call: {json.dumps(call, ensure_ascii=False)}"]
    lines += [f"Request: {request}", "Call:"]
    return "\n".join(lines)


def tool_choice_prompt(tools: list[ToolDefinition], request: str, shots: list[tuple[str, str]]) -> str:
    """Ask the teacher which tool serves a request; the tool list and shots come first, so they stay cached."""
    lines = ["An assistant picks the one tool that serves each request.", "Tools:"]
    lines += [f"- {tool.name}: {tool.description.strip()}" for tool in tools]
    lines.append("")
    for text, name in shots:
        lines += [f"Request: {text}", f"Tool: {name}"]
    lines += [f"Request: {request}", "Tool:"]
    return "\n".join(lines)


def tool_choice_schema(tools: list[ToolDefinition]) -> dict[str, Any]:
    return {"type": "string", "enum": [tool.name for tool in tools]}


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
