"""Classification metrics: accuracy, macro-F1, per-label precision and recall, the confusion matrix."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loraforge.constants import Metric

if TYPE_CHECKING:
    from loraforge.chat.format import ChatFormat
    from loraforge.runtime.protocol import ChatClient


def label_metrics(expected: list[str], predicted: list[str | None], labels: list[str] | None = None) -> dict[str, Any]:
    """Metrics over paired lists; a prediction outside the label set counts as wrong for every label."""
    if len(expected) != len(predicted):
        raise ValueError("expected and predicted differ in length")
    labels = sorted(set(labels or []) | set(expected))
    n = len(expected)
    confusion = {gold: {guess: 0 for guess in labels + ["(other)"]} for gold in labels}
    for gold, guess in zip(expected, predicted):
        confusion[gold][guess if guess in labels else "(other)"] += 1
    per_label = {}
    for label in labels:
        tp = confusion[label][label]
        predicted_as = sum(confusion[gold][label] for gold in labels)
        actual = sum(confusion[label].values())
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    present = [label for label in labels if per_label[label]["support"] > 0]
    return {
        "n": n,
        Metric.ACCURACY.value: sum(g == p for g, p in zip(expected, predicted)) / n if n else 0.0,
        Metric.MACRO_F1.value: sum(per_label[label]["f1"] for label in present) / len(present) if present else 0.0,
        "per_label": per_label,
        "confusion": confusion,
        "labels": labels,
    }


def label_grammar(labels: list[str]) -> str:
    """A GBNF grammar that allows exactly one of the labels."""
    return "root ::= " + " | ".join(json.dumps(label) for label in labels)


async def predict_labels(
    client: ChatClient,
    items: list[str],
    fmt: ChatFormat,
    labels: list[str],
    *,
    adapter: int | None = None,
    invocation: str | None = None,
    on_done: Callable[[], Any] | None = None,
) -> list[str | None]:
    """One label per item through llama.cpp, greedy and constrained to the label set.

    With an aLoRA adapter the prompt ends in its invocation sequence, as in training."""
    grammar = label_grammar(labels)
    out: list[str | None] = []
    for item in items:
        messages = [{"role": "user", "content": item}]
        prompt = fmt.render(messages) + invocation if invocation else fmt.render(messages, add_generation_prompt=True)
        text = (await client.complete(prompt, grammar=grammar, max_tokens=32, temperature=0.0, adapter=adapter)).strip()
        out.append(text if text in labels else None)
        if on_done:
            on_done()
    return out
