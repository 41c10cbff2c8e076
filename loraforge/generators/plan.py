"""What to generate next: the steering input that the autonomous loop fills from error analysis."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

from loraforge.errors import ConfigError

STYLES: tuple[str, ...] = ("single", "multiple", "parallel", "chain", "no_call")
DEFAULT_STYLE_WEIGHTS = {"single": 0.3, "multiple": 0.25, "parallel": 0.15, "chain": 0.15, "no_call": 0.15}


@dataclass
class GenerationPlan:
    """Weights and sampling settings for one batch of synthetic data."""

    style_weights: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_STYLE_WEIGHTS),
        metadata={"help": "Relative weight per style: single, multiple, parallel, chain, no_call."},
    )
    tool_weights: dict[str, float] = field(
        default_factory=dict, metadata={"help": "Relative weight per tool name; missing tools weigh 1."}
    )
    param_weights: dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "Weight per 'tool.param': a weight w > 1 makes an optional parameter appear more often."},
    )
    label_weights: dict[str, float] = field(
        default_factory=dict, metadata={"help": "Relative weight per label (labeled tasks); missing labels weigh 1."}
    )
    temperature: float = field(default=0.8, metadata={"help": "Teacher temperature for requests and items."})
    top_p: float = field(default=0.95, metadata={"help": "Teacher nucleus sampling."})
    variations: list[dict[str, Any]] = field(
        default_factory=list,
        metadata={"help": "Failed examples to write variations of (LLM2LLM); each keeps its tool(s) and style."},
    )
    variation_share: float = field(
        default=0.5, metadata={"help": "Share of the examples spent on variations when any are given."}
    )
    full_tool_list_rate: float = field(
        default=0.8,
        metadata={
            "help": "Share of tool-calling examples that present every tool, not a subset. Users serve an adapter "
            "with all their tools, and rows that show the same tools share their prompt, which training "
            "computes once per batch."
        },
    )
    topic_rate: float = field(
        default=0.5,
        metadata={
            "help": "Chance that the details the teacher is asked to state start with what the tool is about "
            "('weather forecast', 'transfer money'), from its name. People say what they want done; requests "
            "that state only the values ('2 days in denver') do not tell two tools over the same values apart."
        },
    )
    restate_dropped: float = field(
        default=0.8,
        metadata={
            "help": "Chance that an optional value the teacher's request left out is added to it as a short "
            "phrase (', vegan please', 'saying \"...\"') instead of being dropped from the call. A small "
            "teacher drops values from long requests, and an adapter trained on what is left drops them too."
        },
    )
    compose_rate: float = field(
        default=0.5,
        metadata={
            "help": "Share of requests composed from the call without the teacher: what is wanted first, then "
            "each value in the frame people use ('send money to Maria Lopez, $20, for pizza'). A small "
            "teacher mostly copies the list of details it is shown; composed requests keep the data "
            "verb-led and cost no teacher call. 0 leaves every request to the teacher."
        },
    )
    roundtrip: Literal["call", "name", "off"] = field(
        default="off",
        metadata={
            "help": "Semantic check by the teacher: given only the request, it must recover the whole call "
            "('call') or pick the same tool ('name'). For a capable teacher on a GPU. The 135M default "
            "model picks the right one of 12 tools for about 1 correct request in 9, so its verdicts are "
            "noise; the matched-call check (every value stated, nothing stated left out) does the job."
        },
    )

    label_check: bool = field(
        default=True,
        metadata={
            "help": "Labeled tasks: the teacher classifies every new item among the labels, and the item is "
            "kept only when it agrees (a choice among a few labels is within a small teacher's reach)."
        },
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.style_weights) - set(STYLES))
        if unknown:
            raise ConfigError(f"Unknown styles {unknown} in style_weights; known: {list(STYLES)}.")
        if not any(w > 0 for w in self.style_weights.values()):
            raise ConfigError("style_weights must give at least one style a positive weight.")
        if self.roundtrip not in ("call", "name", "off"):
            raise ConfigError(f"roundtrip must be 'call', 'name' or 'off', got {self.roundtrip!r}.")
        if not 0 <= self.topic_rate <= 1:
            raise ConfigError(f"topic_rate must be between 0 and 1, got {self.topic_rate}.")
        if not 0 <= self.compose_rate <= 1:
            raise ConfigError(f"compose_rate must be between 0 and 1, got {self.compose_rate}.")
        if not 0 <= self.restate_dropped <= 1:
            raise ConfigError(f"restate_dropped must be between 0 and 1, got {self.restate_dropped}.")
        if not 0 <= self.variation_share <= 1:
            raise ConfigError(f"variation_share must be between 0 and 1, got {self.variation_share}.")

    def pick(self, rng: random.Random, names: list[str], weights: dict[str, float]) -> str:
        return rng.choices(names, weights=[max(0.0, weights.get(n, 1.0)) for n in names])[0]

    def optional_rate(self, tool: str, param: str) -> float:
        weight = self.param_weights.get(f"{tool}.{param}", 1.0)
        return min(0.95, 0.6 * weight)
