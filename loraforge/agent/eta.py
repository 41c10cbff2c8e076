"""How long the rest of a run will take, from what its finished phases took.

Each phase has a size: the examples it generates (generate), the rows times epochs it trains (train), one
unit for the rest (split, export, evaluate, decide: their work hardly changes between iterations). A
phase's rate is its seconds per unit of size in the latest iteration that ran it, so the estimate follows
the machine the run is on. Further iterations are assumed to cost what this one does, which the strategy's
growing data sets make a lower bound.
"""

from __future__ import annotations

from collections.abc import Mapping

PhaseTimes = Mapping[str, Mapping[str, float]]  # iteration (as text) -> phase -> seconds or size


def rates(seconds: PhaseTimes, sizes: PhaseTimes) -> dict[str, float]:
    """Seconds per unit of size for each phase, from the latest iteration that recorded it."""
    found: dict[str, float] = {}
    for iteration in sorted(seconds, key=int):
        for phase, spent in seconds[iteration].items():
            size = sizes.get(iteration, {}).get(phase, 1.0)
            if size > 0:
                found[phase] = spent / size
    return found


def remaining_seconds(phase_rates: Mapping[str, float], pending: Mapping[str, float]) -> float | None:
    """Seconds for the `pending` phases (phase -> size), or None when one of them has not run yet."""
    if any(phase not in phase_rates for phase in pending):
        return None
    return sum(phase_rates[phase] * size for phase, size in pending.items())


def run_remaining(
    phase_rates: Mapping[str, float],
    pending: Mapping[str, float],
    iteration_sizes: Mapping[str, float],
    iterations_after: int,
) -> tuple[float | None, float | None]:
    """(seconds left in this iteration, seconds left in the run), each None when not yet known. The run's
    further iterations are taken at this iteration's sizes (`iteration_sizes`, every phase)."""
    this = remaining_seconds(phase_rates, pending)
    if this is None:
        return None, None
    if iterations_after <= 0:
        return this, this
    whole = remaining_seconds(phase_rates, iteration_sizes)
    return this, None if whole is None else this + iterations_after * whole


def describe(seconds: float | None) -> str:
    """'about 12 min', 'about 1 h 05 min', or 'unknown yet'."""
    if seconds is None:
        return "unknown yet"
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"
