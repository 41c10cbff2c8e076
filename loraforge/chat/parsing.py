"""Turn a model's answer into tool calls: llama.cpp's parsed calls, or <tool_call> blocks in the text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


@dataclass(frozen=True)
class ParsedAnswer:
    """Calls as {"name", "arguments"}; `malformed` when a call was attempted but could not be read."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    malformed: bool = False
    raw: str = ""


def _call_from(obj: Any, parameters_key: bool = False) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    fn = obj.get("function", obj)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        return None
    arguments = fn.get("arguments", fn.get("parameters", {}) if parameters_key else {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"name": fn["name"], "arguments": arguments}


def parse_answer(
    content: str, tool_calls: list[dict[str, Any]] | None = None, *, parameters_key: bool = False
) -> ParsedAnswer:
    """Prefer the server's parsed `tool_calls`; otherwise read <tool_call> blocks from `content`.

    `parameters_key` also reads a call's arguments from "parameters" (Llama 3.1's JSON calls use it); off by
    default, as on the leaderboard."""
    raw = content or ""
    if tool_calls:
        read = [_call_from(call, parameters_key) for call in tool_calls]
        if any(call is None for call in read):
            return ParsedAnswer(text=raw, malformed=True, raw=json.dumps(tool_calls))
        return ParsedAnswer(
            calls=[call for call in read if call is not None], text=raw, raw=json.dumps(tool_calls, ensure_ascii=False)
        )
    blocks = _BLOCK.findall(raw)
    if not blocks:
        return ParsedAnswer(text=raw.strip(), raw=raw)
    calls: list[dict[str, Any]] = []
    for block in blocks:
        try:
            call = _call_from(json.loads(block), parameters_key)
        except json.JSONDecodeError:
            call = None
        if call is None:
            return ParsedAnswer(text=raw, malformed=True, raw=raw)
        calls.append(call)
    return ParsedAnswer(calls=calls, text=_BLOCK.sub("", raw).strip(), raw=raw)
