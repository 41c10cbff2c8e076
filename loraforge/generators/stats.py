"""Counts for a generation's data report: what was kept, what was rejected and why, per tool."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GenerationStats:
    """Accepted examples per style, tool and label; rejections per reason and per tool, with samples."""

    per_style: Counter = field(default_factory=Counter)
    per_tool: Counter = field(default_factory=Counter)
    per_label: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    rejected_per_tool: Counter = field(default_factory=Counter)
    rejected_by_tool: dict[str, Counter] = field(default_factory=dict)
    tool_attempts: Counter = field(default_factory=Counter)
    samples: dict[str, list[Any]] = field(default_factory=dict)
    samples_by_tool: dict[str, list[Any]] = field(default_factory=dict)
    implausible_samples: list[dict[str, Any]] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)
    given_up: int = 0
    teacher_calls: int = 0
    calls_kept: Counter = field(default_factory=Counter)  # kept calls per tool
    params_kept: Counter = field(default_factory=Counter)  # kept calls per (tool, parameter) that carry it

    def accept(self, row: dict[str, Any]) -> None:
        meta = row.get("meta", {})
        if "style" in meta:
            self.per_style[meta["style"]] += 1
        for tool in meta.get("tools_called", []):
            self.per_tool[tool] += 1
        if "label" in row:
            self.per_label[row["label"]] += 1
        for message in row.get("messages", []):
            for call in message.get("tool_calls") or []:
                function = call.get("function", {})
                arguments = function.get("arguments")
                if isinstance(arguments, dict):
                    self.calls_kept[function.get("name")] += 1
                    self.params_kept.update((function.get("name"), name) for name in arguments)

    def kept_share(self, tool: str, param: str, at_least: int = 5) -> float | None:
        """How often the kept calls of `tool` carry `param`; None before `at_least` calls are kept."""
        calls = self.calls_kept[tool]
        return self.params_kept[(tool, param)] / calls if calls >= at_least else None

    def reject(self, reason: str, sample: Any) -> None:
        self.rejected[reason] += 1
        tool = sample.get("tool") if isinstance(sample, dict) else None
        if tool:
            self.rejected_per_tool[tool] += 1
            self.rejected_by_tool.setdefault(tool, Counter())[reason] += 1
            mine = self.samples_by_tool.setdefault(tool, [])
            if len(mine) < 3:
                mine.append({"reason": reason, **sample})
        kept = self.samples.setdefault(reason, [])
        if len(kept) < 3:
            kept.append(sample)

    @property
    def accepted(self) -> int:
        return sum(self.per_style.values()) or sum(self.per_label.values())

    def coverage(self, tools: list[str]) -> list[dict[str, Any]]:
        """Every tool with no kept example: how often it was tried, why it failed, and samples."""
        return [
            {
                "tool": name,
                "attempts": self.tool_attempts[name],
                "rejected": self.rejected_per_tool[name],
                "rejections": dict(self.rejected_by_tool.get(name, Counter()).most_common()),
                "samples": self.samples_by_tool.get(name, []),
            }
            for name in tools
            if self.per_tool[name] == 0
        ]

    def report(self, tools: list[str] | None = None) -> dict[str, Any]:
        attempts = self.accepted + sum(self.rejected.values())
        out = {
            "accepted": self.accepted,
            "per_style": dict(self.per_style),
            "per_tool": dict(self.per_tool),
            "per_label": dict(self.per_label),
            "attempts": attempts,
            "rejected": dict(self.rejected),
            "rejection_rate": {k: round(v / attempts, 4) for k, v in self.rejected.items()} if attempts else {},
            "rejected_per_tool": dict(self.rejected_per_tool),
            "rejected_by_tool": {tool: dict(c) for tool, c in self.rejected_by_tool.items()},
            "attempts_per_tool": dict(self.tool_attempts),
            "rejected_samples": self.samples,
            "implausible_samples": self.implausible_samples,
            "notes": dict(self.notes),
            "given_up": self.given_up,
            "teacher_calls": self.teacher_calls,
            "teacher_calls_per_example": round(self.teacher_calls / self.accepted, 2) if self.accepted else None,
        }
        if tools is not None:
            out["uncovered_tools"] = self.coverage(tools)
        return out


def coverage_message(gap: dict[str, Any]) -> str:
    """One line that says which tool has no data, after how many attempts, and the main reasons."""
    reasons = ", ".join(f"{k} {v}" for k, v in list(gap["rejections"].items())[:3]) or "no attempt yet"
    return (
        f"No verified example for tool {gap['tool']!r} after {gap.get('rejected', gap['attempts'])} rejected "
        f"attempts ({reasons}); "
        "see uncovered_tools in the data report for rejected samples."
    )
