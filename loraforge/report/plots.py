"""The report's PNG plots, drawn with matplotlib's object API (no pyplot global state, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from loraforge.report.collect import RunData, tool_confusion

COLOURS = {"base": "#9aa0a6", "adapter": "#1a73e8", "best": "#f29900"}


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110, format="png")
    tmp.replace(path)
    return path


def metrics_over_iterations(run: RunData, path: Path) -> Path | None:
    """Base against adapter, one panel per metric, one point per iteration."""
    points = run.evaluated
    if not points:
        return None
    names = run.metric_names
    fig = Figure(figsize=(4.2 * len(names), 3.2))
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        xs = [it.number for it in points]
        for model in ("base", "adapter"):
            ys = [(it.scores.get(model) or {}).get(name) for it in points]
            ax.plot(xs, [y if y is not None else float("nan") for y in ys], "o-", label=model, color=COLOURS[model])
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("iteration")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    return _save(fig, path)


def per_key_accuracy(run: RunData, path: Path) -> Path | None:
    """Per-tool (or per-label) accuracy of base and adapter in the focus iteration."""
    it = run.focus
    if it is None:
        return None
    key = "per_label" if run.task == "labels" else "per_tool"

    def values(model: str) -> dict[str, float]:
        table = (it.scores.get(model) or {}).get(key) or {}
        return {k: (v["recall"] if isinstance(v, dict) else v) for k, v in table.items()}

    base, adapter = values("base"), values("adapter")
    names = sorted(set(base) | set(adapter))
    if not names:
        return None
    fig = Figure(figsize=(max(4.5, 1.1 * len(names) + 2), 3.4))
    ax = fig.add_subplot(1, 1, 1)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [base.get(n, 0) for n in names], 0.4, label="base", color=COLOURS["base"])
    ax.bar([x + 0.2 for x in xs], [adapter.get(n, 0) for n in names], 0.4, label="adapter", color=COLOURS["adapter"])
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy" if run.task == "tools" else "recall")
    ax.set_title(f"{'label' if run.task == 'labels' else 'tool'} accuracy, iteration {it.number}")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def loss_curves(run: RunData, path: Path) -> Path | None:
    """Training loss per step and held-out loss at each evaluation, one colour per iteration."""
    logs = [it for it in run.iterations if it.train_log]
    if not logs:
        return None
    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    for it in logs:
        train = [(r["step"], r["loss"]) for r in it.train_log if "loss" in r]
        val = [(r["step"], r["val_loss"]) for r in it.train_log if "val_loss" in r]
        line = ax.plot(*zip(*train), alpha=0.8, label=f"train, it {it.number}")[0] if train else None
        if val:
            colour = line.get_color() if line else None
            ax.plot(*zip(*val), "s--", color=colour, label=f"held-out, it {it.number}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training and held-out loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def confusion(run: RunData, path: Path) -> Path | None:
    """Labels: the confusion matrix. Tools: expected tool against predicted tool."""
    it = run.focus
    if it is None:
        return None
    if run.task == "labels":
        matrix: dict[str, dict[str, int]] = (it.scores.get("adapter") or {}).get("confusion") or {}
    else:
        matrix = tool_confusion(it.predictions)
    if not matrix:
        return None
    cols = sorted({c for r in matrix.values() for c in r} | set(matrix))
    rows = cols  # square, so that the diagonal holds the right answers
    grid = [[matrix.get(r, {}).get(c, 0) for c in cols] for r in rows]
    fig = Figure(figsize=(1.0 * len(cols) + 3, 0.6 * len(rows) + 2.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(grid, cmap="Blues")
    for y, row in enumerate(grid):
        for x, count in enumerate(row):
            if count:
                ax.text(x, y, str(count), ha="center", va="center", color="black")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("expected")
    ax.set_title(f"confusion, adapter, iteration {it.number}")
    return _save(fig, path)


def errors_over_iterations(run: RunData, path: Path) -> Path | None:
    """Failures by error code for the adapter, stacked per iteration."""
    points = [it for it in run.evaluated if (it.scores.get("adapter") or {}).get("errors") is not None]
    counts: list[dict[str, Any]] = [it.scores["adapter"]["errors"] for it in points]
    if run.task == "labels":
        points = [it for it in run.evaluated if it.error_analysis]
        counts = [(it.error_analysis or {}).get("by_label", {}) for it in points]
    codes = sorted({c for row in counts for c in row})
    if not points or not codes:
        return None
    fig = Figure(figsize=(6.5, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    xs = [str(it.number) for it in points]
    bottom = [0] * len(points)
    for code in codes:
        heights = [row.get(code, 0) for row in counts]
        ax.bar(xs, heights, bottom=bottom, label=code)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xlabel("iteration")
    ax.set_ylabel("failed examples")
    ax.set_title("adapter failures by " + ("expected label" if run.task == "labels" else "error code"))
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


PLOTS = {
    "metrics.png": metrics_over_iterations,
    "per_key_accuracy.png": per_key_accuracy,
    "loss.png": loss_curves,
    "confusion.png": confusion,
    "errors.png": errors_over_iterations,
}


def draw_all(run: RunData, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for name, draw in PLOTS.items():
        path = draw(run, folder / name)
        if path is not None:
            drawn[name] = path
    return drawn
