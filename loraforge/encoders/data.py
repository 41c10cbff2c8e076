"""Encoder rows: labeled texts or text pairs for a classifier, query/positive pairs for an embedding model."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loraforge.errors import ConfigError
from loraforge.files import parse_jsonl
from loraforge.rows import FORMATS, labeled_row


@dataclass(frozen=True)
class LabeledText:
    """A classifier row: one text, or a pair (premise and hypothesis) that a cross-encoder reads together."""

    text: str
    pair: str | None
    label: str


@dataclass(frozen=True)
class Pair:
    """An embedding row: a query, the text it should retrieve, and optionally one it should not."""

    query: str
    positive: str
    negative: str | None = None


def labeled_text(raw: dict[str, Any]) -> LabeledText | None:
    """A classifier row from any labeled format; NLI rows keep premise and hypothesis apart."""
    if "correct_label" in raw:  # the user's correction wins, as in the feedback database
        raw = {**raw, "label": raw["correct_label"]}
    if {"premise", "hypothesis", "label"} <= set(raw):
        premise, hypothesis, label = raw["premise"], raw["hypothesis"], raw["label"]
        if all(isinstance(v, str) and v.strip() for v in (premise, hypothesis)) and label is not None:
            return LabeledText(premise, hypothesis, str(label))
        return None
    row = labeled_row(raw)
    return None if row is None else LabeledText(row["item"], None, row["label"])


def pair_row(raw: dict[str, Any]) -> Pair | None:
    query = raw.get("query", raw.get("anchor"))
    positive, negative = raw.get("positive"), raw.get("negative")
    if not (isinstance(query, str) and query.strip() and isinstance(positive, str) and positive.strip()):
        return None
    if negative is not None and not (isinstance(negative, str) and negative.strip()):
        return None
    return Pair(query, positive, negative)


def load_labeled_texts(path: Path) -> list[LabeledText]:
    """Every row of a labeled JSONL file; a bad line is named with its number and the accepted formats."""
    rows = parse_jsonl(path, labeled_text, "fits no labeled format.", "Use one of: " + "; ".join(FORMATS) + ".")
    if len({row.label for row in rows}) < 2:
        raise ConfigError(f"{path} needs rows of at least two labels.", fix="Add rows of each label.")
    return rows


def load_pairs(path: Path) -> list[Pair]:
    fix = 'Write {"query": ..., "positive": ...}, optionally with "negative" (or "anchor" for query).'
    rows = parse_jsonl(path, pair_row, "is not an embedding pair.", fix)
    if len(rows) < 4:
        raise ConfigError(f"{path} holds {len(rows)} pairs; an embedding adapter needs a few dozen.")
    return rows


def tokenize(tokenizer: Any, rows: Sequence[LabeledText], max_length: int) -> Any:
    """A padded batch of classifier rows: pairs as the tokenizer's text pairs, single texts alone."""
    pairs = [row.pair for row in rows]
    return tokenizer(
        [row.text for row in rows],
        pairs if all(p is not None for p in pairs) else None,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )


def split_labeled(rows: list[LabeledText], fraction: float, seed: int) -> tuple[list[LabeledText], list[LabeledText]]:
    """(train, held-out), chosen by `seed`. Text pairs are held out by premise: every hypothesis of a premise
    goes to the same side, so that a premise seen in training with one label is never scored with another.
    Single texts are held out per label: `fraction` of each (at least one)."""
    rng = random.Random(seed)
    train: list[LabeledText] = []
    heldout: list[LabeledText] = []
    if any(row.pair is not None for row in rows):
        groups: dict[str, list[LabeledText]] = {}
        for row in rows:
            groups.setdefault(row.text, []).append(row)
        keys = sorted(groups)
        rng.shuffle(keys)
        for key in keys:
            side = heldout if len(heldout) < round(len(rows) * fraction) else train
            side += groups[key]
    else:
        for label in sorted({row.label for row in rows}):
            group = [row for row in rows if row.label == label]
            rng.shuffle(group)
            cut = max(1, round(len(group) * fraction)) if len(group) > 1 else 0
            heldout += group[:cut]
            train += group[cut:]
    rng.shuffle(train)
    return train, heldout


def check_split(train: Sequence[Any], heldout: Sequence[Any], source: Any) -> None:
    """Refuse a split that leaves nothing to train on or nothing to score on, naming the data."""
    if not heldout:
        raise ConfigError(f"No row of {source} is held out, so nothing can be scored.", fix="Hold out 0.1 to 0.5.")
    if not train or len({getattr(row, "label", None) for row in train}) < (2 if hasattr(train[0], "label") else 1):
        raise ConfigError(
            f"After holding out rows, {source} leaves too little to train on ({len(train)} rows).",
            fix="Add rows (NLI rows are held out by premise: give several premises), or hold out less.",
        )


def split_pairs(rows: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    order = list(rows)
    random.Random(seed).shuffle(order)
    cut = max(1, round(len(order) * fraction))
    return order[cut:], order[:cut]
