"""Error analysis: one row per failed example, aggregates, and the most frequent failure patterns."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


def failure_row(
    prompt: Any,
    expected: Any,
    predicted: Any,
    error: str,
    tool: str | None = None,
    param: str | None = None,
    label: str | None = None,
    message: str = "",
    example_id: Any = None,
) -> dict[str, Any]:
    return {
        "id": example_id,
        "prompt": prompt,
        "expected": expected,
        "predicted": predicted,
        "error": error,
        "tool": tool,
        "parameter": param,
        "label": label,
        "message": message,
    }


def analyse(failures: list[dict[str, Any]], total: int, examples_per_pattern: int = 3) -> dict[str, Any]:
    """Counts by error code, tool, parameter and label, and patterns (code + tool + parameter) with examples."""
    patterns: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in failures:
        patterns[(row["error"], row.get("tool"), row.get("parameter") or row.get("label"))].append(row)
    ranked = sorted(patterns.items(), key=lambda item: -len(item[1]))
    return {
        "total": total,
        "failed": len(failures),
        "by_error": dict(Counter(r["error"] for r in failures).most_common()),
        "by_tool": dict(Counter(r["tool"] for r in failures if r.get("tool")).most_common()),
        "by_parameter": dict(
            Counter(f"{r['tool']}.{r['parameter']}" for r in failures if r.get("parameter")).most_common()
        ),
        "by_label": dict(Counter(r["label"] for r in failures if r.get("label")).most_common()),
        "patterns": [
            {
                "error": error,
                "tool": tool,
                "detail": detail,
                "count": len(rows),
                "share_of_failures": len(rows) / len(failures),
                "examples": rows[:examples_per_pattern],
            }
            for (error, tool, detail), rows in ranked
        ],
        "failures": failures,
    }
