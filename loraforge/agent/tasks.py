"""The two kinds of task the loop learns, behind one interface: tool calling and classification.

A task knows how to generate its data, which text of a row must stay unique, how to evaluate a model on
held-out rows through llama.cpp, and which metric ranks adapters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from loraforge.constants import LABEL_METRICS, TOOL_METRICS, Metric
from loraforge.evaluators.evaluate import Evaluation, evaluate_labels, evaluate_tool_calls
from loraforge.generators.labels import LabelGenerator, load_labeled, seeds_by_label
from loraforge.generators.plan import GenerationPlan
from loraforge.generators.toolcalls import ToolCallGenerator
from loraforge.tools import load_tools
from loraforge.tools.definition import ToolDefinition
from loraforge.trainers.data import chat_from_labeled

if TYPE_CHECKING:
    from loraforge.chat.format import ChatFormat
    from loraforge.runtime.protocol import ChatClient


class Task(Protocol):
    """What the loop needs of a task; `ToolTask` and `LabelTask` are the two there are."""

    kind: ClassVar[str]  # "tools" or "labels", as recorded in the run's config
    primary: ClassVar[str]  # the metric that ranks adapters
    metrics: ClassVar[tuple[str, ...]]  # the metrics the report shows
    source: Path | None

    def identity(self) -> Any:
        """What makes two runs the same task (the tools, or the label set)."""

    def openai_tools(self) -> list[dict[str, Any]] | None: ...

    def generator(self, client: ChatClient, plan: GenerationPlan, seed: int) -> Any:
        """The synthetic-data generator for this task."""

    def describe(self) -> str:
        """The task in a few words, for the run's first line ("12 tools", "labels a, b")."""

    def text_of(self, row: dict[str, Any]) -> str:
        """The text of a row that must stay unique (held-out rows never repeat in training)."""

    def seed_rows(self) -> list[dict[str, Any]]: ...

    def to_chat(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row as the chat that training sees."""

    def adapter_meta(self) -> dict[str, Any]: ...

    async def evaluate(
        self,
        client: ChatClient,
        heldout: list[dict[str, Any]],
        *,
        adapter: int | None,
        max_tokens: int,
        on_done: Callable,
        fmt: ChatFormat,
        invocation: str | None = None,
    ) -> Evaluation:
        """The model's answers on the rows, scored through the shared path (`evaluators/evaluate.py`)."""


class ToolTask:
    kind: ClassVar[str] = "tools"
    primary: ClassVar[str] = Metric.EXACT_MATCH.value
    metrics: ClassVar[tuple[str, ...]] = TOOL_METRICS

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

    def generator(self, client: ChatClient, plan: GenerationPlan, seed: int) -> ToolCallGenerator:
        return ToolCallGenerator(self.tools, client, plan, seed=seed)

    def describe(self) -> str:
        return f"{len(self.tools)} tools"

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
        client: ChatClient,
        heldout: list[dict[str, Any]],
        *,
        adapter: int | None,
        max_tokens: int,
        on_done: Callable,
        fmt: ChatFormat,
        invocation: str | None = None,
    ) -> Evaluation:
        """Exact match on the rows; a failure's `id` is its row's index. (Tool calls are asked through
        chat, where an aLoRA invocation has no place: `invocation` is for the label task.)"""
        return await evaluate_tool_calls(
            client, heldout, adapter=adapter, max_tokens=max_tokens, on_done=on_done, ids=list(range(len(heldout)))
        )


class LabelTask:
    kind: ClassVar[str] = "labels"
    primary: ClassVar[str] = Metric.ACCURACY.value
    metrics: ClassVar[tuple[str, ...]] = LABEL_METRICS

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

    def generator(self, client: ChatClient, plan: GenerationPlan, seed: int) -> LabelGenerator:
        return LabelGenerator(self.seeds, client, plan, seed=seed)

    def describe(self) -> str:
        return f"labels {', '.join(self.labels)}"

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
        client: ChatClient,
        heldout: list[dict[str, Any]],
        *,
        adapter: int | None,
        max_tokens: int,
        on_done: Callable,
        fmt: ChatFormat,
        invocation: str | None = None,
    ) -> Evaluation:
        """Accuracy and macro-F1; `invocation` ends each prompt for an aLoRA adapter."""
        return await evaluate_labels(
            client,
            heldout,
            fmt=fmt,
            labels=self.labels,
            adapter=adapter,
            invocation=invocation,
            on_done=on_done,
            ids=list(range(len(heldout))),
        )
