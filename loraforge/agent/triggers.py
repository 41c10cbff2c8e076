"""Training triggers for accumulated feedback: train only when there is enough of it, and enough wrong.

Thresholds follow the feedback-learning practice: a minimum number of labeled samples for statistical
stability, and a minimum misclassification rate that shows a need to improve. Feedback rows that carry
the model's own answer (`predicted`) give the rate directly; otherwise it is measured by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TriggerResult:
    ready: bool
    message: str
    samples: int
    error_rate: float | None


def recorded_error_rate(rows: list[dict[str, Any]]) -> float | None:
    """Misclassification rate from rows that record what the model predicted, or None if none do."""
    judged = [r for r in rows if "predicted" in r and "label" in r]
    if not judged:
        return None
    return sum(r["predicted"] != r["label"] for r in judged) / len(judged)


def check(
    samples: int, error_rate: float | None, min_samples: int | None, min_error_rate: float | None
) -> TriggerResult:
    """Whether training should start; the message says which threshold is not met and by how much."""
    if min_samples is not None and samples < min_samples:
        return TriggerResult(
            False,
            f"Only {samples} feedback samples; training starts at {min_samples} ({min_samples - samples} more needed).",
            samples,
            error_rate,
        )
    if min_error_rate is not None and error_rate is not None and error_rate < min_error_rate:
        return TriggerResult(
            False,
            f"The current model misclassifies {error_rate:.1%} of the feedback; training starts at "
            f"{min_error_rate:.1%}. Nothing to improve yet.",
            samples,
            error_rate,
        )
    rate = f", error rate {error_rate:.1%}" if error_rate is not None else ""
    return TriggerResult(True, f"{samples} feedback samples{rate}: training.", samples, error_rate)
