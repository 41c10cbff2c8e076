"""The run's time estimate: rates from finished phases, scaled by each phase's work."""

import pytest

from loraforge.agent import eta


def test_rates_come_from_the_latest_iteration_per_unit_of_work():
    seconds = {"1": {"generate": 100.0, "train": 300.0}, "2": {"generate": 50.0}}
    sizes = {"1": {"generate": 20, "train": 60}, "2": {"generate": 20}}
    assert eta.rates(seconds, sizes) == {"generate": 2.5, "train": 5.0}
    assert eta.rates({"1": {"export": 30.0}}, {}) == {"export": 30.0}  # no size recorded: one unit


def test_remaining_time_scales_with_the_pending_work_and_further_iterations():
    rates = {"generate": 2.0, "train": 5.0, "evaluate": 40.0}
    sizes = {"generate": 30, "train": 100, "evaluate": 1}
    this, run = eta.run_remaining(rates, {"train": 100, "evaluate": 1}, sizes, iterations_after=2)
    assert this == pytest.approx(540.0)
    assert run == pytest.approx(540.0 + 2 * (60 + 500 + 40))
    assert eta.run_remaining(rates, {"train": 100}, sizes, iterations_after=0) == (500.0, 500.0)


def test_a_phase_that_never_ran_makes_the_estimate_unknown():
    this, run = eta.run_remaining({"generate": 2.0}, {"generate": 10, "train": 50}, {"generate": 10}, 1)
    assert this is None and run is None
    assert eta.describe(None) == "unknown yet"


@pytest.mark.parametrize("seconds, text", [(20, "about 1 min"), (754, "about 13 min"), (3900, "about 1 h 05 min")])
def test_describe(seconds, text):
    assert eta.describe(seconds) == text
