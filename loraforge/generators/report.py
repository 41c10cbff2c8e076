"""Counts for a generation's data report: what was kept, what was rejected and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GenerationStats:
    """Accepted examples per style, tool and label; rejections per reason, with a few samples each."""

    per_style: Counter = field(default_factory=Counter)
    per_tool: Counter = field(default_factory=Counter)
    per_label: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    rejected_per_tool: Counter = field(default_factory=Counter)
    samples: dict[str, list[Any]] = field(default_factory=dict)
    notes: Counter = field(default_factory=Counter)
    given_up: int = 0
    teacher_calls: int = 0

    def accept(self, row: dict[str, Any]) -> None:
        meta = row.get("meta", {})
        if "style" in meta:
            self.per_style[meta["style"]] += 1
        for tool in meta.get("tools_called", []):
            self.per_tool[tool] += 1
        if "label" in row:
            self.per_label[row["label"]] += 1

    def reject(self, reason: str, sample: Any) -> None:
        self.rejected[reason] += 1
        tool = sample.get("tool") if isinstance(sample, dict) else None
        if tool:
            self.rejected_per_tool[tool] += 1
        kept = self.samples.setdefault(reason, [])
        if len(kept) < 3:
            kept.append(sample)

    @property
    def accepted(self) -> int:
        return sum(self.per_style.values()) or sum(self.per_label.values())

    def report(self) -> dict[str, Any]:
        attempts = self.accepted + sum(self.rejected.values())
        return {
            "accepted": self.accepted,
            "per_style": dict(self.per_style),
            "per_tool": dict(self.per_tool),
            "per_label": dict(self.per_label),
            "attempts": attempts,
            "rejected": dict(self.rejected),
            "rejection_rate": {k: round(v / attempts, 4) for k, v in self.rejected.items()} if attempts else {},
            "rejected_per_tool": dict(self.rejected_per_tool),
            "rejected_samples": self.samples,
            "notes": dict(self.notes),
            "given_up": self.given_up,
            "teacher_calls": self.teacher_calls,
        }
