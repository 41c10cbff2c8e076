"""Classification metrics: accuracy, macro-F1, per-label precision and recall, the confusion matrix."""

from __future__ import annotations

from typing import Any


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
        "accuracy": sum(g == p for g, p in zip(expected, predicted)) / n if n else 0.0,
        "macro_f1": sum(per_label[label]["f1"] for label in present) / len(present) if present else 0.0,
        "per_label": per_label,
        "confusion": confusion,
        "labels": labels,
    }
