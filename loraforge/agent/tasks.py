"""The two kinds of task the loop learns, behind one interface: tool calling and classification.

A task knows how to generate its data, which text of a row must stay unique, how to evaluate a model on
held-out rows through llama.cpp, and which metric ranks adapters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loraforge.evaluators.error_analysis import failure_row
from loraforge.evaluators.labels import label_metrics, predict_labels
from loraforge.evaluators.toolcall_eval import evaluate_rows, failures, summarise
from loraforge.generators.labels import LabelGenerator, load_labeled, seeds_by_label
from loraforge.generators.plan import GenerationPlan
from loraforge.generators.toolcalls import ToolCallGenerator
from loraforge.tools import load_tools
from loraforge.tools.definition import ToolDefinition
from loraforge.trainers.data import chat_from_labeled


@dataclass
class Evaluation:
    """One model's results on the held-out rows."""

    summary: dict[str, Any]
    failures: list[dict[str, Any]]  # error-analysis rows; `id` is the held-out row's index
    records: list[dict[str, Any]]  # one prediction record per row, for predictions.jsonl
    correct: list[bool]


class ToolTask:
    kind = "tools"
    primary = "exact_match"
    metrics = ("exact_match", "tool_name_accuracy")

    def __init__(self, tools: list[ToolDefinition], source: Path | None = None) -> None:
        self.tools = tools
        self.source = source

    @classmethod
    def from_file(cls, path: Path) -> ToolTask:
        return cls(load_tools(path), path)

    def identity(self) -> Any:
        return self.openai_tools()

    def openai_tools(self) -> list[dict[str, Any]]:
        return [t.to_openai() for t in self.tools]

    def generator(self, client: Any, plan: GenerationPlan, seed: int) -> ToolCallGenerator:
        return ToolCallGenerator(self.tools, client, plan, seed=seed)

    @staticmethod
    def text_of(row: dict[str, Any]) -> str:
        return row["messages"][0]["content"]

    def seed_rows(self) -> list[dict[str, Any]]:
        return []

    @staticmethod
    def to_chat(row: dict[str, Any]) -> dict[str, Any]:
        return row

    def adapter_meta(self) -> dict[str, Any]:
        return {"task": "tools", "tools": self.identity()}

    async def evaluate(
        self,
        client: Any,
        heldout: list[dict[str, Any]],
        *,
        adapter: int | None,
        max_tokens: int,
        on_done: Callable,
        fmt: Any,
    ) -> Evaluation:
        results = await evaluate_rows(client, heldout, adapter=adapter, max_tokens=max_tokens, on_done=on_done)
        return Evaluation(
            summary=summarise(results, heldout),
            failures=failures(results, heldout),
            records=[r.record(i) for i, r in enumerate(results)],
            correct=[r.correct for r in results],
        )

    @staticmethod
    def final_texts(results: Evaluation) -> list[str]:
        return [turns[-1]["text"] if turns else "" for turns in (r["turns"] for r in results.records)]


class LabelTask:
    kind = "labels"
    primary = "accuracy"
    metrics = ("accuracy", "macro_f1")

    def __init__(self, rows: list[dict[str, Any]], source: Path | None = None) -> None:
        self.rows = rows
        self.seeds = seeds_by_label(rows)
        self.labels = sorted(self.seeds)
        self.source = source

    @classmethod
    def from_file(cls, path: Path) -> LabelTask:
        return cls(load_labeled(path), path)

    def identity(self) -> Any:
        return {"labels": self.labels}

    @staticmethod
    def openai_tools() -> None:
        return None

    def generator(self, client: Any, plan: GenerationPlan, seed: int) -> LabelGenerator:
        return LabelGenerator(self.seeds, client, plan, seed=seed)

    @staticmethod
    def text_of(row: dict[str, Any]) -> str:
        return row["item"]

    def seed_rows(self) -> list[dict[str, Any]]:
        """The user's own labeled rows: they train in every iteration."""
        return [{"item": r["item"], "label": r["label"], "meta": {"style": "seed"}} for r in self.rows]

    @staticmethod
    def to_chat(row: dict[str, Any]) -> dict[str, Any]:
        """The item as the user turn, the label as the assistant's answer: what training sees."""
        return chat_from_labeled(row)

    def adapter_meta(self) -> dict[str, Any]:
        return {"task": "labels", "labels": self.labels}

    async def evaluate(
        self,
        client: Any,
        heldout: list[dict[str, Any]],
        *,
        adapter: int | None,
        max_tokens: int,
        on_done: Callable,
        fmt: Any,
    ) -> Evaluation:
        guesses = await predict_labels(
            client, [r["item"] for r in heldout], fmt, self.labels, adapter=adapter, on_done=on_done
        )
        gold = [r["label"] for r in heldout]
        return Evaluation(
            summary=label_metrics(gold, guesses, self.labels),
            failures=[
                failure_row(r["item"], r["label"], g, "wrong_label", label=r["label"], example_id=i)
                for i, (r, g) in enumerate(zip(heldout, guesses))
                if g != r["label"]
            ],
            records=[{"id": i, "label": g, "expected": r["label"]} for i, (r, g) in enumerate(zip(heldout, guesses))],
            correct=[g == r["label"] for r, g in zip(heldout, guesses)],
        )


Task = ToolTask | LabelTask
