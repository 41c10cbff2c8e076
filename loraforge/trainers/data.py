"""Training rows in every accepted form, turned into one shape: chat rows, then token ids and labels.

Accepted: chat JSONL ({"messages", "tools"}), {"item", "label"}, {"instruction", "input", "output"} and
{"premise", "hypothesis", "label"}. Labeled rows become a user turn (the item) and an assistant turn (the
label). With an activated LoRA, the adapter only switches on after the invocation sequence, so the prompt
ends with it and only the turn after it is trained.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from loraforge.chat.format import ChatFormat
from loraforge.errors import ConfigError
from loraforge.files import iter_jsonl
from loraforge.rows import FORMATS, labeled_row
from loraforge.trainers.formatting import Encoded, encode_segments


def chat_from_labeled(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": row["item"]}, {"role": "assistant", "content": row["label"]}],
        "label": row["label"],
    }


def load_training_rows(path: str | Path) -> list[dict[str, Any]]:
    """Chat rows from a JSONL file in any accepted form; a bad line is named with its number."""
    rows = []
    for number, raw in iter_jsonl(Path(path)):
        if isinstance(raw.get("messages"), list):
            if not any(m.get("role") == "assistant" for m in raw["messages"] if isinstance(m, dict)):
                raise ConfigError(f"{path}, line {number}: the conversation has no assistant turn to learn.")
            rows.append({"messages": raw["messages"], "tools": raw.get("tools")})
            continue
        labeled = labeled_row(raw)
        if labeled is None:
            raise ConfigError(
                f"{path}, line {number}: a row with keys {sorted(raw)} fits no training format.",
                fix='Use chat rows {"messages", "tools"} or one of: ' + "; ".join(FORMATS) + ".",
            )
        rows.append(chat_from_labeled(labeled))
    if not rows:
        raise ConfigError(f"{path} holds no training rows.")
    return rows


def ending_at_calls(row: dict[str, Any]) -> dict[str, Any]:
    """The row cut after its first assistant turn that makes calls (the tool results and the answer to
    them dropped); a row without calls is returned as it is."""
    messages = row["messages"]
    for index, message in enumerate(messages):
        if message.get("role") == "assistant" and message.get("tool_calls"):
            return {**row, "messages": messages[: index + 1]}
    return row


def answer_subset(rows: list[dict[str, Any]], share: float, seed: int) -> list[dict[str, Any]]:
    """Rows as trained: a `share` of them whole, the others ending at their calls (the same rows for
    the same seed)."""
    if share >= 1:
        return rows
    rng = random.Random(seed * 7919 + 1)
    return [row if rng.random() < share else ending_at_calls(row) for row in rows]


def encode_training_row(
    fmt: ChatFormat,
    tokenizer: Any,
    row: dict[str, Any],
    *,
    invocation: str | None = None,
    train_all: bool = False,
) -> Encoded:
    """Token ids and labels for one chat row.

    Without `invocation`, every assistant turn is trained. With it (activated LoRA), the prompt is the
    conversation before the last assistant turn followed by the invocation text, and only that last
    turn is trained.
    """
    if invocation is None:
        return encode_segments(tokenizer, fmt.segments(row["messages"], row.get("tools")), train_all)
    messages = row["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    context = fmt.render(messages[:last], row.get("tools"))
    full = fmt.render(messages[: last + 1], row.get("tools"))
    opener = fmt.render(messages[:last], row.get("tools"), add_generation_prompt=True)[len(context) :]
    turn = full[len(context) + len(opener) :]
    end = turn.rfind(fmt.eos_token) + len(fmt.eos_token)
    return encode_segments(tokenizer, [(context, train_all), (invocation, train_all), (turn[:end], True)])


def invocation_ids(tokenizer: Any, invocation: str) -> list[int]:
    ids = tokenizer(invocation, add_special_tokens=False).input_ids
    if not ids:
        raise ConfigError("The aLoRA invocation prompt is empty.", fix="Give a non-empty invocation_prompt.")
    return list(ids)
