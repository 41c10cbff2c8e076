"""Fitting the next iteration into what is left of `--time-budget`.

The cost of an iteration is read from the run's own phase rates (eta.rates: seconds per example generated,
per row-epoch trained, and per split, export and evaluation): generating n new examples costs
rate x n, and training costs rate x epochs x rows, where the rows are the ones the iteration will train on
besides the new ones (every earlier row, or only the replayed seeds with a warm start) plus the new ones
(with their replay share). When the planned size does not fit, the largest one that does is planned
instead; when even the smallest useful iteration does not fit, the run stops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# About the same cost whatever the iteration's size (decide, a fraction of a second, is left out: when the next
# plan is sized, the current iteration's decide has not been timed yet).
FIXED_PHASES = ("split", "export", "evaluate")


@dataclass(frozen=True)
class NextRows:
    """What the next iteration trains on, in rows: `fixed` whatever its size, plus `per_new` per new example."""

    fixed: int
    per_new: float = 1.0


def iteration_seconds(rates: Mapping[str, float], examples: int, epochs: int, rows: NextRows) -> float | None:
    """Seconds for an iteration of `examples` new examples trained `epochs` times; None when a phase has no
    rate yet."""
    if any(phase not in rates for phase in ("generate", "train", *FIXED_PHASES)):
        return None
    training = rates["train"] * epochs * (rows.fixed + rows.per_new * examples)
    return rates["generate"] * examples + training + sum(rates[phase] for phase in FIXED_PHASES)


def largest_fitting(rates: Mapping[str, float], seconds: float, epochs: int, rows: NextRows) -> int:
    """The most new examples whose iteration ends within `seconds` (0 when none does); rates must be known."""
    fixed = iteration_seconds(rates, 0, epochs, rows)
    assert fixed is not None
    per_example = rates["generate"] + rates["train"] * epochs * rows.per_new
    if seconds < fixed:
        return 0
    return math.floor((seconds - fixed) / per_example) if per_example > 0 else 10**9


def smallest_useful(planned: int) -> int:
    """Below this many new examples an iteration is not worth its fixed costs: a quarter of the plan, at
    least 10 (the smallest first iteration)."""
    return max(10, round(planned / 4))
