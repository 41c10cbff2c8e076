"""The strategy: from one iteration's evidence to the next iteration's plan, or to a stop.

Pure functions over plain data, so that every rule is unit-tested without a model. Each rule that fires
returns a `Decision` with the evidence behind it; the orchestrator logs them and the report shows them.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from loraforge.agent import budget
from loraforge.errors import ConfigError
from loraforge.generators.plan import GenerationPlan


@dataclass
class StrategyConfig:
    """When the loop stops and how far it moves settings between iterations."""

    target: float = field(default=0.95, metadata={"help": "Stop once the adapter's primary metric reaches this."})
    patience: int = field(
        default=2, metadata={"help": "Stop after this many iterations without a gain of min_improvement."}
    )
    min_improvement: float = field(default=0.02, metadata={"help": "Smallest gain that counts as progress."})
    max_examples: int = field(default=240, metadata={"help": "Most new examples generated in one iteration."})
    growth: float = field(default=1.5, metadata={"help": "Factor on new examples when accuracy is low."})
    judge_floor: float = field(
        default=6.0, metadata={"help": "Judge score (1-10) below which answers count as poor: temperature drops."}
    )
    max_variations: int = field(default=24, metadata={"help": "Failed held-out examples to write variations of."})

    def __post_init__(self) -> None:
        checks = [
            ("target", 0 < self.target <= 1, "between 0 (excluded) and 1, e.g. 0.9"),
            ("patience", self.patience >= 1, "at least 1"),
            ("min_improvement", 0 <= self.min_improvement < 1, "between 0 and 1, e.g. 0.02"),
            ("max_examples", self.max_examples >= 1, "at least 1"),
            ("growth", self.growth >= 1, "at least 1, e.g. 1.5"),
            ("judge_floor", 1 <= self.judge_floor <= 10, "a judge score between 1 and 10"),
            ("max_variations", self.max_variations >= 0, "0 or more"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"strategy {name} must be {allowed}, got {getattr(self, name)!r}.")


@dataclass
class IterationPlan:
    """What one iteration does: how many new examples, how to generate them, and how to train."""

    examples: int
    generation: GenerationPlan
    epochs: int
    learning_rate: float
    r: int
    alpha: float
    dropout: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IterationPlan:
        data = dict(data)
        data["generation"] = GenerationPlan(**data["generation"])
        return cls(**data)


@dataclass
class Decision:
    rule: str
    action: str
    evidence: str


@dataclass
class Evidence:
    """What the strategy reads after an iteration's evaluation."""

    iteration: int
    max_iterations: int
    scores: list[float]  # the adapter's primary metric, one per finished iteration
    base_score: float
    failures: list[dict[str, Any]]  # error-analysis rows of the adapter on held-out data
    heldout: list[dict[str, Any]]  # the held-out rows, in the order the failures' ids refer to
    train_losses: list[float]
    val_losses: list[float]
    judge_score: float | None = None
    # failures on real requests (--eval-data), reduced to their pattern (tool, parameter, error, label): they
    # weigh what to generate, never become text to vary
    pattern_failures: list[dict[str, Any]] = field(default_factory=list)
    # tools that got no verified example (uncovered) or under 5% of the calls (thin) in this iteration's data
    uncovered_tools: list[str] = field(default_factory=list)
    thin_tools: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    iteration_seconds: list[float] = field(default_factory=list)
    time_budget_s: float | None = None
    # seconds per unit of each phase so far (eta.rates), and what the next iteration would train on: with
    # both, the next plan is sized to the time left (budget.py) instead of stopping on an average iteration
    phase_rates: dict[str, float] = field(default_factory=dict)
    next_rows: budget.NextRows | None = None
    # the configured epochs when the next iteration warm-starts from the best adapter (warm_start on and one
    # promoted), else None: a warm start continues that adapter's training instead of raising the epochs
    warm_epochs: int | None = None


def first_plan(examples: int, generation: GenerationPlan, training: Any) -> IterationPlan:
    return IterationPlan(
        examples=examples,
        generation=copy.deepcopy(generation),
        epochs=training.epochs,
        learning_rate=training.learning_rate,
        r=training.r,
        alpha=training.alpha,
        dropout=training.dropout,
    )


def stop_reason(ev: Evidence, cfg: StrategyConfig) -> Decision | None:
    """The first stop condition that holds, or None."""
    best = max(ev.scores)
    if best >= cfg.target:
        return Decision("target_reached", "stop", f"best score {best:.3f} >= target {cfg.target:.3f}")
    if ev.iteration >= ev.max_iterations:
        return Decision("iteration_budget", "stop", f"{ev.iteration} of {ev.max_iterations} iterations done")
    if ev.time_budget_s is not None and ev.iteration_seconds and not _sized_by_rates(ev):
        expected = sum(ev.iteration_seconds) / len(ev.iteration_seconds)
        if ev.elapsed_s + expected > ev.time_budget_s:
            return Decision(
                "time_budget",
                "stop",
                f"{ev.elapsed_s / 60:.1f} min used; another iteration takes about {expected / 60:.1f} min "
                f"and the budget is {ev.time_budget_s / 60:.1f} min",
            )
    k = cfg.patience
    if len(ev.scores) > k:
        before = max(ev.scores[:-k])
        recent = max(ev.scores[-k:])
        if recent < before + cfg.min_improvement:
            return Decision(
                "plateau",
                "stop",
                f"best of the last {k} iterations {recent:.3f} is not {cfg.min_improvement:.3f} above {before:.3f}",
            )
    return None


def _sized_by_rates(ev: Evidence) -> bool:
    """Whether the next iteration can be sized to the time budget from the phase rates."""
    return ev.next_rows is not None and budget.iteration_seconds(ev.phase_rates, 1, 1, ev.next_rows) is not None


def fit_to_budget(plan: IterationPlan, ev: Evidence) -> Decision | None:
    """Fewer new examples when the planned iteration would end past the time budget (the plan is changed in
    place), or a stop decision when even the smallest useful one would; None when it fits."""
    if ev.time_budget_s is None or ev.next_rows is None or not _sized_by_rates(ev):
        return None
    left = ev.time_budget_s - ev.elapsed_s
    planned = budget.iteration_seconds(ev.phase_rates, plan.examples, plan.epochs, ev.next_rows)
    if planned is None or planned <= left:
        return None
    fits = budget.largest_fitting(ev.phase_rates, left, plan.epochs, ev.next_rows)
    smallest = budget.smallest_useful(plan.examples)
    evidence = f"{plan.examples} new examples take about {planned / 60:.1f} min; {max(0.0, left) / 60:.1f} min are left"
    if fits < smallest:
        return Decision("time_budget", "stop", f"{evidence}, too little for {smallest} (the smallest useful)")
    old, plan.examples = plan.examples, fits
    return Decision("time_budget_fit", f"new examples {old} -> {fits}", evidence)


def _trend(values: list[float]) -> float:
    """Relative change of the last value against the one before it (negative: falling)."""
    if len(values) < 2 or values[-2] == 0:
        return 0.0
    return (values[-1] - values[-2]) / abs(values[-2])


def fit_decisions(plan: IterationPlan, ev: Evidence) -> list[Decision]:
    """Over- and under-fitting, read from the loss curves; the plan is changed in place."""
    decisions = []
    train_falling = len(ev.train_losses) >= 2 and ev.train_losses[-1] < ev.train_losses[0]
    if len(ev.val_losses) >= 2 and ev.val_losses[-1] > min(ev.val_losses) * 1.03 and train_falling:
        old = (plan.epochs, plan.dropout)
        plan.epochs = max(1, plan.epochs - 1)
        plan.dropout = round(min(0.2, plan.dropout + 0.05), 3)
        decisions.append(
            Decision(
                "overfitting",
                f"epochs {old[0]} -> {plan.epochs}, dropout {old[1]} -> {plan.dropout}",
                f"held-out loss rose from {min(ev.val_losses):.3f} to {ev.val_losses[-1]:.3f} "
                f"while train loss fell to {ev.train_losses[-1]:.3f}",
            )
        )
    elif len(ev.val_losses) >= 2 and _trend(ev.val_losses) < -0.03:
        if ev.warm_epochs is not None:
            action = "no more epochs: the next iteration continues training the best adapter (warm start)"
        elif plan.epochs < 6:
            plan.epochs += 1
            action = f"epochs -> {plan.epochs}"
        else:
            plan.r, plan.alpha = min(64, plan.r * 2), min(128.0, plan.alpha * 2)
            action = f"rank -> {plan.r} (alpha {plan.alpha})"
        decisions.append(
            Decision(
                "underfitting",
                action,
                f"held-out loss still falling at the end ({ev.val_losses[-2]:.3f} -> {ev.val_losses[-1]:.3f})",
            )
        )
    if ev.warm_epochs is not None and plan.epochs > ev.warm_epochs:
        old_epochs, plan.epochs = plan.epochs, ev.warm_epochs
        decisions.append(
            Decision(
                "warm_start_epochs",
                f"epochs {old_epochs} -> {plan.epochs}",
                "the next iteration continues from the best adapter on new rows and a replay: the configured "
                "epochs, ended sooner by early stopping, instead of the ones raised for training from scratch",
            )
        )
    return decisions


def targeted_data(plan: IterationPlan, ev: Evidence, cfg: StrategyConfig) -> list[Decision]:
    """LLM2LLM: variations of failed held-out examples, weighted toward what fails (on real requests too,
    by pattern only)."""
    if not ev.failures and not ev.pattern_failures:
        plan.generation.variations = []
        return []
    gen = plan.generation
    by_id = {index: row for index, row in enumerate(ev.heldout)}
    targets = []
    for failure in ev.failures:
        row = by_id.get(failure.get("id", -1))
        if row is None:
            continue
        target = {**row, "id": failure["id"], "meta": {**row.get("meta", {}), "error": failure["error"]}}
        if target not in targets:
            targets.append(target)
    gen.variations = targets[: cfg.max_variations]
    weighed = ev.failures + ev.pattern_failures
    tools = Counter(f["tool"] for f in weighed if f.get("tool"))
    params = Counter(f"{f['tool']}.{f['parameter']}" for f in weighed if f.get("tool") and f.get("parameter"))
    labels = Counter(f["label"] for f in weighed if f.get("label"))
    styles = Counter(t.get("meta", {}).get("style") for t in targets if t.get("meta", {}).get("style"))
    n = len(weighed)
    gen.tool_weights = {tool: round(1 + 2 * count / n, 3) for tool, count in tools.items()}
    gen.param_weights = {param: 1.6 for param in params}
    gen.label_weights = {label: round(1 + 2 * count / n, 3) for label, count in labels.items()}
    for style, count in styles.items():
        if style in gen.style_weights:
            gen.style_weights[style] = round(gen.style_weights[style] * (1 + count / n), 3)
    codes = Counter(f["error"] for f in weighed)
    focus = tools or labels
    real = (
        f" ({len(ev.pattern_failures)} of them on real requests, used by pattern only)" if ev.pattern_failures else ""
    )
    return [
        Decision(
            "targeted_data",
            f"{len(gen.variations)} failed held-out examples to vary (share {gen.variation_share}); "
            f"weights up for {', '.join(sorted(focus)) or 'failing styles'}",
            f"{n} held-out failures{real}: " + ", ".join(f"{code} {count}" for code, count in codes.most_common()),
        )
    ]


def coverage_decision(plan: IterationPlan, ev: Evidence) -> Decision | None:
    """Tools the data left out (or nearly): their generation weight goes up before anything else is tuned."""
    if not ev.uncovered_tools and not ev.thin_tools:
        return None
    parts = []
    if ev.uncovered_tools:
        parts.append(f"no verified example for {', '.join(ev.uncovered_tools)}")
    if ev.thin_tools:
        parts.append(f"under 5% of the calls for {', '.join(ev.thin_tools)}")
    return Decision(
        "uncovered_tools",
        "generation weight x3 for uncovered tools, x2 for thin ones",
        "; ".join(parts),
    )


def next_plan(current: IterationPlan, ev: Evidence, cfg: StrategyConfig) -> tuple[IterationPlan | None, list[Decision]]:
    """The next iteration's plan and the decisions behind it; None as the plan means stop."""
    stop = stop_reason(ev, cfg)
    if stop is not None:
        return None, [stop]
    plan = copy.deepcopy(current)
    decisions: list[Decision] = []
    coverage = coverage_decision(plan, ev)  # first: a tool without data cannot be learned at all
    score = ev.scores[-1]
    if score < cfg.target:
        old = plan.examples
        plan.examples = min(cfg.max_examples, max(old + 1, round(old * cfg.growth)))
        decisions.append(
            Decision("low_accuracy", f"new examples {old} -> {plan.examples}", f"score {score:.3f} < {cfg.target}")
        )
    decisions += targeted_data(plan, ev, cfg)
    if coverage is not None:  # applied after the weights from failures, so that it wins over them
        decisions.insert(0, coverage)
        for tool in ev.uncovered_tools + ev.thin_tools:
            plan.generation.tool_weights[tool] = max(plan.generation.tool_weights.get(tool, 1.0), 1.0) * (
                3.0 if tool in ev.uncovered_tools else 2.0
            )
    if ev.judge_score is not None and ev.judge_score < cfg.judge_floor:
        old_t = plan.generation.temperature
        plan.generation.temperature = round(max(0.3, old_t - 0.1), 3)
        decisions.append(
            Decision(
                "poor_answers",
                f"teacher temperature {old_t} -> {plan.generation.temperature}",
                f"judge score {ev.judge_score:.1f} < {cfg.judge_floor}",
            )
        )
    decisions += fit_decisions(plan, ev)
    if len(ev.scores) >= 2 and ev.scores[-1] < max(ev.scores[:-1]) + cfg.min_improvement:
        old_lr = plan.learning_rate
        plan.learning_rate = old_lr * 0.7
        decisions.append(
            Decision(
                "plateau_lr_decay",
                f"learning rate {old_lr:.2e} -> {plan.learning_rate:.2e}",
                f"score {ev.scores[-1]:.3f} vs best before {max(ev.scores[:-1]):.3f}",
            )
        )
    fitted = fit_to_budget(plan, ev)  # last: the size every other rule chose, cut to the time left
    if fitted is not None and fitted.action == "stop":
        return None, [fitted]
    if fitted is not None:
        decisions.append(fitted)
    return plan, decisions
