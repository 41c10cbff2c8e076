"""Held-out prompts for checks that need them (fidelity): from a run's files, the tools, or defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.files import read_json_object, read_jsonl

GENERIC = ["What is the capital of France?", "Write one sentence about the sea.", "How do I boil an egg?"]


def _from_row(row: Any) -> tuple[list[dict[str, Any]], list | None] | None:
    """The prompt of a held-out row, or None for a row that is not one loraforge wrote (a held-out file
    beside an outside adapter may be anyone's)."""
    if not isinstance(row, dict):
        return None
    messages = row.get("messages")
    if isinstance(messages, list) and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
        tools = row.get("tools")
        return messages[:first], tools if isinstance(tools, list) else None
    if isinstance(row.get("item"), str):
        return [{"role": "user", "content": row["item"]}], None
    return None


def heldout_prompts(adapter_dir: Path, count: int) -> list[tuple[list[dict[str, Any]], list | None]]:
    """Up to `count` (messages, tools) prompts, from held-out files near the adapter, else its tools."""
    adapter_dir = Path(adapter_dir)
    found: list[tuple[list[dict[str, Any]], list | None]] = []
    for path in (adapter_dir / Artifact.HELDOUT.value, adapter_dir.parent / Artifact.HELDOUT.value):
        if path.is_file():
            found += [p for p in (_from_row(r) for r in read_jsonl(path)) if p and p[0]]
            break
    if len(found) < count:
        tools = read_json_object(adapter_dir / Artifact.ADAPTER_META.value).get("tools") or []
        for tool in tools:
            found.append(([{"role": "user", "content": f"Please use {tool['function']['name']}."}], tools))
    for text in GENERIC:
        found.append(([{"role": "user", "content": text}], None))
    return found[:count]
