"""Assemble the report: read the run, draw the plots, lay out the sections, write HTML and Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.files import atomic_write_text
from loraforge.report.blocks import Block, Heading, Image, Para, Table, cell, to_html, to_markdown
from loraforge.report.collect import RunData, collect, worst_examples
from loraforge.report.plots import draw_all

FILES_DIR = Artifact.REPORT_FILES.value


def build_report(run_dir: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Write report.html (self-contained) and report.md (+ report_files/*.png) for a run folder."""
    run = collect(Path(run_dir))
    out_dir = Path(out_dir or run_dir)
    encoder = run.task == "encoder-labels"
    plots = {} if encoder else draw_all(run, out_dir / FILES_DIR)
    title = f"loraforge report: {run.run_dir.name}"
    blocks = encoder_layout(run) if encoder else layout(run, plots)
    html_path, md_path = out_dir / Artifact.REPORT_HTML.value, out_dir / Artifact.REPORT_MD.value
    atomic_write_text(html_path, to_html(title, blocks))
    atomic_write_text(md_path, to_markdown(title, blocks, out_dir))
    return {"html": html_path, "markdown": md_path, **plots}


def layout(run: RunData, plots: dict[str, Path]) -> list[Block]:
    blocks: list[Block] = []
    blocks += summary_section(run)
    blocks += metrics_section(run, plots)
    blocks += decisions_section(run)
    blocks += training_section(run, plots)
    blocks += errors_section(run, plots)
    blocks += judge_section(run)
    blocks += data_section(run)
    return blocks


def encoder_layout(run: RunData) -> list[Block]:
    """An encoder run (agent/encoder_run.py): the base and each iteration on the held-out rows, the
    decisions, and the held-out confusions of the active adapter."""
    cfg = run.config
    base = _read(run.run_dir / "base_metrics.json") or {}
    split = _read(run.run_dir / "split.json") or {}
    heldout = split.get("heldout", [])
    source = (
        f"{cfg['eval_data']} (your rows)"
        if cfg.get("eval_data")
        else "a split of the labeled rows (by premise for NLI pairs)"
    )
    summary: list[list[Any]] = [
        ["task", "encoder classifier (labels)"],
        ["labeled rows", cfg.get("labels") or cfg.get("feedback_db")],
        ["base model", cfg.get("model") or "all-MiniLM-L6-v2 (default)"],
        ["held-out rows", f"{len(heldout)}: {source}"],
        ["active adapter", run.active or "none (no adapter beat the base)"],
    ]
    rows: list[list[Any]] = []
    if base:
        rows.append(["base (frozen encoder, trained head)", base["accuracy"], base["macro_f1"], base["train_accuracy"]])
    for it in run.evaluated:
        m = it.scores
        settings = m.get("settings", {})
        name = f"iteration {it.number} (epochs {settings.get('epochs')}, dropout {settings.get('dropout')})"
        rows.append([name, m["accuracy"], m["macro_f1"], m["train_accuracy"]])
    blocks: list[Block] = [
        Heading("Summary"),
        Table(["", "value"], summary),
        Para(
            "Scores are on held-out labeled rows, never trained on. The base has no classification head of its "
            "own, so it is measured with a head trained on the same rows while the encoder stays frozen."
        ),
        Heading("Base against adapter"),
        Table(["", "accuracy", "macro-F1", "train accuracy"], rows),
    ]
    blocks += decisions_section(run)
    focus = run.focus
    if focus is not None and heldout and len(focus.scores.get("predicted", [])) == len(heldout):
        pairs: dict[tuple[str, str], int] = {}
        for row, answer in zip(heldout, focus.scores["predicted"], strict=True):
            pairs[(row["label"], answer)] = pairs.get((row["label"], answer), 0) + 1
        labels = sorted({gold for gold, _ in pairs} | {answer for _, answer in pairs})
        table = [[gold] + [pairs.get((gold, answer), 0) for answer in labels] for gold in labels]
        blocks += [
            Heading(f"Held-out confusions of iteration {focus.number}"),
            Table(["gold \\ predicted", *labels], table),
        ]
    return blocks


def _read(path: Path) -> Any:
    import json

    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _primary(run: RunData) -> str:
    return run.metric_names[0]


def summary_section(run: RunData) -> list[Block]:
    cfg = run.config
    focus = run.focus
    lines: list[list[Any]] = [
        ["task", "classification (labels)" if run.task == "labels" else "tool calling"],
        ["task file", cfg.get("labels") or cfg.get("tools")],
        ["base model", cfg.get("model") or "SmolLM2-135M-Instruct (default)"],
        ["iterations evaluated", len(run.evaluated)],
        ["active adapter", run.active or "none (no adapter beat the base)"],
        ["run finished", bool(run.state.get("finished"))],
    ]
    if run.state.get("stop_reason"):
        lines.append(["stopped because", run.state["stop_reason"]])
    blocks: list[Block] = [Heading("Summary"), Table(["", "value"], lines)]
    if focus:
        name = _primary(run)
        real = focus.scores.get("real")
        if real:
            blocks.append(
                Para(
                    f"Iteration {focus.number}, on {real['rows']} real requests that decide promotion: {name} "
                    f"{cell((real.get('adapter') or {}).get(name))} with the adapter against "
                    f"{cell((real.get('base') or {}).get(name))} for the base model."
                )
            )
        base = (focus.scores.get("base") or {}).get(name)
        adapter = (focus.scores.get("adapter") or {}).get(name)
        blocks.append(
            Para(
                f"Iteration {focus.number}: {name} {cell(adapter)} with the adapter against {cell(base)} for the base "
                f"model, on {focus.scores.get('heldout_examples', '?')} synthetic held-out examples, "
                f"measured with {focus.scores.get('measured_with', 'llama.cpp')}."
            )
        )
        if not real:
            blocks.append(
                Para(
                    "Every score in this report is on synthetic data, written by the teacher: it does not say how "
                    "the adapter does on what your users type. Write 20 real requests (`loraforge init` writes "
                    "a template, eval-requests.jsonl) and pass them with --eval-data; they then decide which "
                    "adapter is promoted, and they are never trained on."
                )
            )
    return blocks


def metrics_section(run: RunData, plots: dict[str, Path]) -> list[Block]:
    if not run.evaluated:
        return [Heading("Metrics"), Para("No iteration has been evaluated yet.")]
    header = ["iteration"] + [f"{model} {name}" for name in run.metric_names for model in ("base", "adapter")]
    rows = [
        [it.number]
        + [(it.scores.get(model) or {}).get(name) for name in run.metric_names for model in ("base", "adapter")]
        for it in run.evaluated
    ]
    blocks: list[Block] = [Heading("Base against adapter, per iteration")]
    real_rows = [
        [it.number]
        + [
            ((it.scores["real"].get(model)) or {}).get(name)
            for name in run.metric_names
            for model in ("base", "adapter")
        ]
        for it in run.evaluated
        if it.scores.get("real")
    ]
    if real_rows:
        blocks += [Heading("On real requests (--eval-data; these decide promotion)", 3), Table(header, real_rows)]
        blocks.append(Heading("On the synthetic held-out set", 3))
    blocks.append(Table(header, rows))
    if "metrics.png" in plots:
        blocks.append(Image(plots["metrics.png"], "Held-out metrics of the base model and the adapter."))
    focus = run.focus
    if focus is None:
        return blocks
    key = "per_label" if run.task == "labels" else "per_tool"
    base_table = (focus.scores.get("base") or {}).get(key) or {}
    adapter_table = (focus.scores.get("adapter") or {}).get(key) or {}
    if adapter_table:
        kind = "label" if run.task == "labels" else "tool"

        def value(table: dict, name: str) -> Any:
            v = table.get(name)
            return v["recall"] if isinstance(v, dict) else v

        names = sorted(set(base_table) | set(adapter_table))
        blocks += [
            Heading(f"Per-{kind} accuracy (iteration {focus.number})", 3),
            Table([kind, "base", "adapter"], [[n, value(base_table, n), value(adapter_table, n)] for n in names]),
        ]
        if "per_key_accuracy.png" in plots:
            blocks.append(Image(plots["per_key_accuracy.png"], f"Per-{kind} accuracy of base and adapter."))
    return blocks


def decisions_section(run: RunData) -> list[Block]:
    blocks: list[Block] = [Heading("Decisions of the loop")]
    if not run.history:
        return blocks + [Para("No decision has been recorded yet.")]
    rows = []
    for entry in run.history:
        if entry.get("event") == "rollback":
            rows.append([entry.get("iteration"), "rollback", "", entry.get("reason", "")])
            continue
        rows.append([entry.get("iteration"), "promotion", "yes" if entry.get("promoted") else "no", entry["reason"]])
        for decision in entry.get("decisions", []):
            rows.append([entry.get("iteration"), decision["rule"], decision["action"], decision.get("evidence", "")])
    return blocks + [Table(["iteration", "rule", "action", "evidence / reason"], rows)]


def training_section(run: RunData, plots: dict[str, Path]) -> list[Block]:
    rows = []
    for it in run.evaluated:
        training = it.scores.get("training") or {}
        hp = training.get("hyperparameters") or {}
        rows.append(
            [
                it.number,
                it.scores.get("train_examples"),
                training.get("steps"),
                training.get("final_train_loss"),
                training.get("best_val_loss"),
                hp.get("epochs"),
                f"{hp['learning_rate']:.2g}" if hp.get("learning_rate") is not None else None,
                hp.get("r"),
                hp.get("dropout"),
                round(training["seconds"]) if training.get("seconds") is not None else None,
            ]
        )
    blocks: list[Block] = [Heading("Training")]
    if rows:
        header = ["iteration", "examples", "steps", "train loss", "held-out loss", "epochs", "lr", "r", "dropout", "s"]
        blocks.append(Table(header, rows))
    if "loss.png" in plots:
        blocks.append(Image(plots["loss.png"], "Training loss per step and held-out loss at each evaluation."))
    return blocks


def errors_section(run: RunData, plots: dict[str, Path]) -> list[Block]:
    blocks: list[Block] = [Heading("What still fails")]
    if "confusion.png" in plots:
        caption = "Confusion matrix" if run.task == "labels" else "Expected tool against predicted tool"
        blocks.append(Image(plots["confusion.png"], caption + " (adapter)."))
    if "errors.png" in plots:
        blocks.append(Image(plots["errors.png"], "Adapter failures over iterations."))
    focus = run.focus
    if focus is None or not focus.error_analysis:
        return blocks + [Para("No error analysis yet.")]
    analysis = focus.error_analysis
    blocks.append(
        Para(f"Iteration {focus.number}: {analysis['failed']} of {analysis['total']} held-out examples fail.")
    )
    patterns = analysis.get("patterns", [])[:8]
    if patterns:
        blocks += [
            Heading("Most frequent failure patterns", 3),
            Table(
                ["error", "tool", "parameter / label", "count", "share"],
                [[p["error"], p["tool"], p["detail"], p["count"], p["share_of_failures"]] for p in patterns],
            ),
        ]
    worst = worst_examples(analysis)
    if worst:
        blocks += [
            Heading("Worst examples", 3),
            Table(
                ["request", "expected", "predicted", "error", "why"],
                [[w["prompt"], w["expected"], w["predicted"], w["error"], w.get("message", "")] for w in worst],
            ),
        ]
    return blocks


def judge_section(run: RunData) -> list[Block]:
    rows = []
    for it in run.evaluated:
        judge: dict[str, Any] = it.scores.get("judge") or {}
        if not judge:
            continue
        mean = judge.get("mean_score", {})
        pairwise = judge.get("pairwise", {})
        agreement = judge.get("agreement_with_exact_match", {})
        rows.append(
            [
                it.number,
                mean.get("base"),
                mean.get("adapter"),
                pairwise.get("adapter"),
                pairwise.get("base"),
                pairwise.get("tie"),
                agreement.get("adapter"),
            ]
        )
    if not rows:
        return []
    header = ["iteration", "base score", "adapter score", "adapter wins", "base wins", "ties", "agrees with EM"]
    return [
        Heading("LLM judge (final answers after tool results)"),
        Para("Scores are 1-10. Pairwise wins count only when the judge agrees in both orders."),
        Table(header, rows),
    ]


def data_section(run: RunData) -> list[Block]:
    blocks: list[Block] = [Heading("Synthetic data")]
    reports = [(it.number, it.data_report) for it in run.iterations if it.data_report]
    if not reports:
        return blocks + [Para("No data report yet.")]
    counts: list[list[Any]] = []
    for number, report in reports:
        for kind in ("per_style", "per_tool", "per_label"):
            for name, count in sorted((report.get(kind) or {}).items()):
                counts.append([number, kind.removeprefix("per_"), name, count])
    blocks += [Heading("Kept examples", 3), Table(["iteration", "by", "name", "count"], counts)]
    rejected = [
        [number, reason, count, (report.get("rejection_rate") or {}).get(reason)]
        for number, report in reports
        for reason, count in sorted((report.get("rejected") or {}).items(), key=lambda kv: -kv[1])
    ]
    if rejected:
        blocks += [Heading("Rejections by reason", 3), Table(["iteration", "reason", "count", "rate"], rejected)]
    number, report = reports[-1]
    blocks += realism_blocks(number, report)
    samples = [
        [reason, sample] for reason, items in (report.get("rejected_samples") or {}).items() for sample in items[:2]
    ]
    if samples:
        blocks += [Heading(f"Rejected samples (iteration {number})", 3), Table(["reason", "sample"], samples)]
    return blocks


def realism_blocks(number: int, report: dict[str, Any]) -> list[Block]:
    """Does the data read like people, and does it cover every tool? From the data report's realism figures."""
    realism = report.get("realism")
    if not realism:
        return []
    blocks: list[Block] = [Heading(f"Realism of the data (iteration {number})", 3)]
    uncovered = report.get("uncovered_tools") or []
    for gap in uncovered:
        reasons = ", ".join(f"{k} {v}" for k, v in list(gap.get("rejections", {}).items())[:4]) or "never tried"
        blocks.append(
            Para(
                f"NOT COVERED: tool {gap['tool']} has no verified example after {gap['attempts']} attempts ({reasons})."
            )
        )
    styles = sorted({s for counts in realism["calls_per_tool_and_style"].values() for s in counts})
    rows = []
    for tool, count in realism["calls_per_tool"].items():
        flag = "none" if count == 0 else ("thin" if tool in realism.get("thin_tools", []) else "")
        per_style = realism["calls_per_tool_and_style"].get(tool, {})
        rows.append([tool, count, realism["share_per_tool"].get(tool), flag] + [per_style.get(s, 0) for s in styles])
    blocks.append(Table(["tool", "calls", "share", "coverage"] + styles, rows))
    spread = realism.get("request_words") or {}
    figures = [
        [
            "requests copying a description",
            f"{realism['description_copies']} ({realism['description_copy_share']:.1%})",
        ],
        ["parameter names printed as labels", f"{realism['name_leaks']} ({realism['name_leak_share']:.1%})"],
        ["values refused as implausible", (report.get("rejected") or {}).get("implausible_value", 0)],
        ["pooled values refused as implausible", (report.get("notes") or {}).get("implausible_pool_values", 0)],
        ["distinct words / word pairs", f"{realism['distinct_1']} / {realism['distinct_2']}"],
        [
            "request length in words (min, median, p90, max)",
            f"{spread.get('min')}, {spread.get('median')}, {spread.get('p90')}, {spread.get('max')}",
        ],
        ["teacher calls per verified example", report.get("teacher_calls_per_example")],
        ["verified examples per minute", report.get("examples_per_minute")],
    ]
    blocks.append(Table(["figure", "value"], figures))
    examples = [[e.get("style"), e["request"], e["calls"]] for e in realism.get("examples", [])]
    if examples:
        blocks += [Heading("Ten random examples", 3), Table(["style", "request", "calls"], examples)]
    return blocks
