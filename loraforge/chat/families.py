"""The chat-model families loraforge has a tool template for, and how a template's family is recognised.

A family is known by its chat markup: the role headers and the text that ends a turn. loraforge's own
template for a family renders tools and tool calls in that family's native format (the one its instruct
models were tuned on, and the one llama.cpp's tool-call parser for the family reads); Gemma 3 has no
tool role, so its template defines one (see gemma3-tools.jinja).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One family of chat markup."""

    name: str
    template: str  # loraforge's tool template for the family, in chat/templates/
    end_of_turn: str  # the text that ends an assistant turn: trained on, and where generation stops
    markers: tuple[str, ...]  # substrings of a chat template that all appear only in this family's markup
    calls: str  # how an assistant turn writes its calls (for error messages and the README)
    # What ends an assistant turn for a base model of the family (one that ships no chat template), when
    # that differs from `end_of_turn`: a pretrained model never saw its chat tokens, and a LoRA cannot teach
    # it one. Gemma 3's <end_of_turn> sits among six thousand unused tokens of almost the same embedding
    # (cosine > 0.95) in the 270M base model, so an adapter cannot make it likelier than 1 in 2,000, and
    # generation never stops; its <eos> is a token it was trained to write.
    base_end_of_turn: str | None = None


# Checked in this order: the first family whose markers all appear in a template is its family.
FAMILIES: tuple[Family, ...] = (
    Family(
        "granite",
        "granite-tools.jinja",
        "<|end_of_text|>",
        ("<|start_of_role|>",),
        '<|tool_call|>[{"name", "arguments"}]',
    ),
    Family(
        "llama3",
        "llama3-tools.jinja",
        "<|eot_id|>",
        ("<|start_header_id|>",),
        '{"name", "parameters"} as the whole turn, "; " between calls',
    ),
    Family(
        "gemma3",
        "gemma3-tools.jinja",
        "<end_of_turn>",
        ("<start_of_turn>",),
        '<tool_call>{"name", "arguments"}</tool_call>',
        base_end_of_turn="<eos>",
    ),
    Family("mistral", "mistral-tools.jinja", "</s>", ("[INST]",), '[TOOL_CALLS][{"name", "arguments", "id"}]'),
    Family(
        "qwen",
        "qwen-tools.jinja",
        "<|im_end|>",
        ("<|im_start|>", "<tool_response>"),
        '<tool_call>\\n{"name", "arguments"}\\n</tool_call>',
    ),
    Family(
        "chatml", "chatml-tools.jinja", "<|im_end|>", ("<|im_start|>",), '<tool_call>{"name", "arguments"}</tool_call>'
    ),
)
BY_NAME = {family.name: family for family in FAMILIES}
CHATML = BY_NAME["chatml"]


def family_of(template: str | None) -> Family | None:
    """The family whose markup `template` (a chat template's source) uses, or None when none is known."""
    if not template:
        return None
    return next((f for f in FAMILIES if all(marker in template for marker in f.markers)), None)


# The family of a model that ships no chat template (a base model), by its GGUF architecture. "llama" is
# left out: SmolLM2, Llama and Mistral all convert as "llama", so such a model gets ChatML.
ARCHITECTURE_FAMILIES = {
    "gemma3": "gemma3",
    "qwen2": "qwen",
    "qwen3": "qwen",
    "granite": "granite",
    "granitemoe": "granite",
}


# A family template names what ends a model turn in one line, which a base model's variant rewrites.
_TURN_END = re.compile(r"\{%-? set model_turn_end = '([^']+)' -?%\}")


def declared_end_of_turn(template: str) -> str | None:
    """The end of an assistant turn that a loraforge family template declares (model_turn_end), if any."""
    match = _TURN_END.search(template)
    return match.group(1) if match else None


def for_base_model(family: Family, template: str) -> str:
    """`template` (the family's tool template) as a base model of the family is trained and served with:
    assistant turns end with the family's base_end_of_turn where it has one."""
    end = family.base_end_of_turn
    if end is None or declared_end_of_turn(template) is None:
        return template
    return _TURN_END.sub(lambda m: m.group(0).replace(m.group(1), end), template, count=1)


def family_for_model(template: str | None, architecture: str | None = None) -> Family | None:
    """The family of a model: from its chat template, else (no template) from its architecture, else ChatML."""
    if template:
        return family_of(template)
    return BY_NAME[ARCHITECTURE_FAMILIES.get(architecture or "", "chatml")]
