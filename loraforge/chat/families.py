"""The chat-model families loraforge has a tool template for, and how a template's family is recognised.

A family is known by its chat markup: the role headers and the text that ends a turn. loraforge's own
template for a family renders tools and tool calls in that family's native format (the one its instruct
models were tuned on, and the one llama.cpp's tool-call parser for the family reads); Gemma 3 has no
tool role, so its template defines one (see gemma3-tools.jinja).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One family of chat markup."""

    name: str
    template: str  # loraforge's tool template for the family, in chat/templates/
    end_of_turn: str  # the text that ends an assistant turn: trained on, and where generation stops
    markers: tuple[str, ...]  # substrings of a chat template that all appear only in this family's markup
    calls: str  # how an assistant turn writes its calls (for error messages and the README)


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


def family_for_model(template: str | None, architecture: str | None = None) -> Family | None:
    """The family of a model: from its chat template, else (no template) from its architecture, else ChatML."""
    if template:
        return family_of(template)
    return BY_NAME[ARCHITECTURE_FAMILIES.get(architecture or "", "chatml")]
