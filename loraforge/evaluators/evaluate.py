"""One evaluation path for both tasks, used by the loop and by `loraforge eval`: a model's answers on
rows, scored, with error-analysis rows and one prediction record per row (the `predictions.jsonl` row)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loraforge.evaluators.error_analysis import failure_row
from loraforge.evaluators.labels import label_metrics, predict_labels
from loraforge.evaluators.toolcall_eval import evaluate_rows, failures, summarise

if TYPE_CHECKING:
    from loraforge.chat.format import ChatFormat
    from loraforge.runtime.protocol import ChatClient


@dataclass
class Evaluation:
    """One model's results on a set of rows."""

    summary: dict[str, Any]  # the metrics; "n" is the number of scored rows
    failures: list[dict[str, Any]]  # error-analysis rows; `id` is the row's id
    records: list[dict[str, Any]]  # one prediction record per row, for predictions.jsonl
    correct: list[bool | None]  # per row; None where the row has no expected answer

    def final_texts(self) -> list[str]:
        """Per row, the model's last text of a tool-call evaluation: its answer after the tool results."""
        return [turns[-1]["text"] if turns else "" for turns in (r.get("turns") or [] for r in self.records)]


def row_ids(rows: list[dict[str, Any]], ids: list[Any] | None = None) -> list[Any]:
    """`ids` when given, else each row's own `id`, or its index when it has none."""
    if ids is not None:
        if len(ids) != len(rows):
            raise ValueError(f"{len(ids)} ids for {len(rows)} rows")
        return list(ids)
    return [row.get("id", index) for index, row in enumerate(rows)]


async def evaluate_tool_calls(
    client: ChatClient,
    rows: list[dict[str, Any]],
    *,
    adapter: int | None,
    max_tokens: int,
    on_done: Callable[[], None] | None = None,
    ids: list[Any] | None = None,
) -> Evaluation:
    """Greedy answers at every decision point of every row, checked by exact match."""
    ids = row_ids(rows, ids)
    results = await evaluate_rows(client, rows, adapter=adapter, max_tokens=max_tokens, on_done=on_done)
    return Evaluation(
        summary=summarise(results, rows),
        failures=failures(results, rows, ids),
        records=[r.record(ids[r.index]) for r in results],
        correct=[r.correct if r.scored else None for r in results],
    )


async def evaluate_labels(
    client: ChatClient,
    rows: list[dict[str, Any]],
    *,
    fmt: ChatFormat,
    labels: list[str],
    adapter: int | None,
    invocation: str | None = None,
    on_done: Callable[[], None] | None = None,
    ids: list[Any] | None = None,
) -> Evaluation:
    """One label per row's `item`; rows with a `label` are scored. `invocation` ends the prompt of an
    aLoRA adapter, as in its training."""
    ids = row_ids(rows, ids)
    guesses = await predict_labels(
        client, [r["item"] for r in rows], fmt, labels, adapter=adapter, invocation=invocation, on_done=on_done
    )
    known = [(r["label"], g) for r, g in zip(rows, guesses) if "label" in r]
    summary = label_metrics([k[0] for k in known], [k[1] for k in known], labels) if known else {"n": 0}
    correct = [(g == r["label"]) if "label" in r else None for r, g in zip(rows, guesses)]
    return Evaluation(
        summary=summary,
        failures=[
            failure_row(r["item"], r["label"], g, "wrong_label", label=r["label"], example_id=i)
            for i, r, g, ok in zip(ids, rows, guesses, correct)
            if ok is False
        ],
        records=[
            {"id": i, "label": g, "expected": r.get("label"), "correct": ok}
            for i, r, g, ok in zip(ids, rows, guesses, correct)
        ],
        correct=correct,
    )
