"""Turn chat rows into token ids and labels, exactly as llama.cpp will see the prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loraforge.chat.format import ChatFormat

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def supervised(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def bos_prefix(tokenizer: Any) -> list[int]:
    """The BOS that llama.cpp adds to a prompt, if the tokenizer adds one; never twice."""
    ids = tokenizer("", add_special_tokens=True).input_ids
    return list(ids[:1]) if ids else []


def encode_segments(tokenizer: Any, segments: list[tuple[str, bool]], train_all: bool = False) -> Encoded:
    """Tokenise each piece on its own (a prompt and a generated turn are tokenised apart at serving time)."""
    input_ids = bos_prefix(tokenizer)
    labels = [IGNORE] * len(input_ids)
    for text, trained in segments:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        input_ids += ids
        labels += ids if (trained or train_all) else [IGNORE] * len(ids)
    return Encoded(input_ids, labels)


def encode_row(fmt: ChatFormat, tokenizer: Any, row: dict[str, Any], train_all: bool = False) -> Encoded:
    """A chat row ({"messages", "tools"}) to ids; only assistant turns are trained unless `train_all`."""
    return encode_segments(tokenizer, fmt.segments(row["messages"], row.get("tools")), train_all)


def prompt_ids(fmt: ChatFormat, tokenizer: Any, messages: list[dict[str, Any]], tools: list | None) -> list[int]:
    """The ids of a generation prompt, as the trainer builds them (for parity checks and fidelity tests)."""
    text = fmt.render(messages, tools, add_generation_prompt=True)
    return bos_prefix(tokenizer) + tokenizer(text, add_special_tokens=False).input_ids
