"""The labeled row formats that every command accepts, read into one {"item", "label"} shape.

A module beneath the subpackages: training, generation and evaluation all read labeled rows.
"""

from __future__ import annotations

from typing import Any

FORMATS = (
    '{"item", "label"}',
    '{"instruction", "input", "output"} (instruction and input form the item; output is the label)',
    '{"premise", "hypothesis", "label"} (NLI feedback)',
)


def labeled_row(raw: dict[str, Any]) -> dict[str, Any] | None:
    """One {"item", "label"} row from any accepted format, or None when the row fits none."""
    meta = raw.get("meta")
    if "item" in raw and "label" in raw:
        item, label = raw["item"], raw["label"]
    elif "instruction" in raw and "output" in raw:
        extra = raw.get("input") or ""
        item, label = (raw["instruction"] + ("\n\n" + extra if extra else "")), raw["output"]
    elif {"premise", "hypothesis", "label"} <= set(raw):
        item, label = f"Premise: {raw['premise']}\nHypothesis: {raw['hypothesis']}", raw["label"]
    else:
        return None
    if not isinstance(item, str) or not item.strip() or isinstance(label, (dict, list)) or label is None:
        return None
    row = {"item": item, "label": str(label)}
    if "premise" in raw and "hypothesis" in raw:  # kept for cross-encoders, which read the two apart
        row["premise"], row["hypothesis"] = raw["premise"], raw["hypothesis"]
    if meta is not None:
        row["meta"] = meta
    return row
