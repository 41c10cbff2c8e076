"""Labeled data: reading a labeled file, and generating new items per label from a few seeds."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loraforge.concurrency import examples_by_index
from loraforge.errors import ConfigError
from loraforge.files import parse_jsonl
from loraforge.generators import prompts, verify
from loraforge.generators.dedup import NearDuplicateIndex
from loraforge.generators.plan import GenerationPlan
from loraforge.generators.stats import GenerationStats
from loraforge.rows import FORMATS, labeled_row

if TYPE_CHECKING:
    from loraforge.runtime.protocol import ChatClient


def load_labeled(path: str | Path) -> list[dict[str, Any]]:
    """Read labeled JSONL in any accepted format; a bad line is named with its number and the fix."""
    rows = parse_jsonl(Path(path), labeled_row, "fits no labeled format.", "Use one of: " + "; ".join(FORMATS) + ".")
    if not rows:
        raise ConfigError(f"{path} holds no rows.", fix="Add a few examples per label.")
    return rows


def seeds_by_label(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    seeds: dict[str, list[str]] = {}
    for row in rows:
        seeds.setdefault(row["label"], []).append(row["item"])
    if len(seeds) < 2:
        raise ConfigError(f"Labeled data needs at least two labels; found {sorted(seeds)}.")
    return seeds


def label_cycle(labels: list[str], weights: dict[str, float]) -> list[str]:
    """A repeating order of labels in proportion to their weights (equal weights: perfectly balanced)."""
    units = {label: max(0, round(4 * weights.get(label, 1.0))) for label in labels}
    cycle = [label for label in labels for _ in range(units[label])]
    return cycle or list(labels)


class LabelGenerator:
    """New items for each label, written by the teacher from the seeds and checked before use."""

    def __init__(
        self,
        seeds: dict[str, list[str]],
        client: ChatClient,
        plan: GenerationPlan | None = None,
        *,
        descriptions: dict[str, str] | None = None,
        seed: int = 0,
        attempts: int = 12,
        dedup_threshold: float = 0.7,
    ) -> None:
        self.seeds = seeds
        self.labels = sorted(seeds)
        self.client = client
        self.plan = plan or GenerationPlan()
        self.descriptions = descriptions or {}
        self.seed = seed
        self.attempts = attempts
        self.stats = GenerationStats()
        self.dedup = NearDuplicateIndex(dedup_threshold)
        self._kept: dict[str, list[str]] = {label: [] for label in self.labels}
        for items in seeds.values():
            for item in items:
                self.dedup.add(item, force=True)
        self._cycle = label_cycle(self.labels, self.plan.label_weights)
        self._assigned: dict[str, int] = {label: 0 for label in self.labels}

    def _next_label(self) -> str:
        """The label furthest below its share, counting examples kept and in flight: the set stays balanced
        even when the teacher finds one label harder than another."""
        share = {label: self._cycle.count(label) / len(self._cycle) for label in self.labels}
        return min(self.labels, key=lambda label: self._assigned[label] / share[label] if share[label] else 1e9)

    def remember(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.dedup.add(row["item"], force=True)
            self.stats.accept(row)
            if row["label"] in self._assigned:
                self._assigned[row["label"]] += 1

    async def generate(
        self, indices: list[int], on_example: Callable[[dict[str, Any]], None] | None = None
    ) -> list[dict[str, Any]]:
        return await examples_by_index(self._example, indices, on_example)

    async def _example(self, index: int) -> dict[str, Any] | None:
        variations = [v for v in self.plan.variations if v.get("label") in self.seeds]
        chooser = random.Random((self.seed * 1_000_003 + index) * 89)
        target = chooser.choice(variations) if variations and chooser.random() < self.plan.variation_share else None
        label = target["label"] if target else self._next_label()
        self._assigned[label] += 1
        for attempt in range(self.attempts):
            seed = (self.seed * 1_000_003 + index) * 89 + attempt + 1
            rng = random.Random(seed)
            try:
                item = await self._item(label, rng, target)
            except verify.Rejected as rejection:
                self.stats.reject(rejection.reason, rejection.sample)
                continue
            meta: dict[str, Any] = {"index": index, "style": "labeled", "seed": seed}
            if target is not None:
                meta["target"] = {"variation_of": target.get("id"), "label": label}
            row = {"item": item, "label": label, "meta": meta}
            self.stats.accept(row)
            return row
        self.stats.given_up += 1
        self._assigned[label] -= 1
        return None

    async def _item(self, label: str, rng: random.Random, target: dict[str, Any] | None) -> str:
        shots = rng.sample(self.seeds[label], k=min(4, len(self.seeds[label])))
        kept = self._kept[label]
        shots += rng.sample(kept, k=min(2, len(kept)))
        if target is not None:
            shots.append(target["item"])
        text = await self.client.complete(
            prompts.label_item_prompt(label, self.descriptions.get(label, ""), shots),
            family=f"item:{label}",
            stop=["\n"],
            max_tokens=80,
            temperature=self.plan.temperature,
            top_p=self.plan.top_p,
            seed=rng.randrange(2**31),
        )
        item = verify.clean_line(text)
        if len(item.split()) < 3:
            raise verify.Rejected("too_short", item)
        if len(item) > 400:
            raise verify.Rejected("too_long", item)
        if self.dedup.is_duplicate(item):
            raise verify.Rejected("near_duplicate", item)
        if self.plan.label_check:
            got = await self._classify(item, rng)
            if got != label:
                raise verify.Rejected("label_disagrees", {"item": item, "intended": label, "teacher": got})
        if not self.dedup.add(item):
            raise verify.Rejected("near_duplicate", item)
        kept.append(item)
        return item

    async def _classify(self, item: str, rng: random.Random) -> str | None:
        shots = [(text, label) for label in self.labels for text in self.seeds[label][:2]]
        rng.shuffle(shots)
        text = await self.client.complete(
            prompts.label_check_prompt(shots, item),
            family="classify",
            json_schema={"enum": self.labels},
            max_tokens=16,
            temperature=0.0,
        )
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return None
