"""The report: built only from a run folder's JSON files, with plots that a real browser renders."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from loraforge.cli import main
from loraforge.errors import ConfigError
from loraforge.report import build_report


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_tool_run(root: Path, seed: int = 0) -> dict:
    """A two-iteration run folder in the layout the orchestrator writes, with random numbers."""
    rng = random.Random(seed)
    _write(root / "config.json", {"task": "tools", "config": {"tools": "tools.yaml"}})
    numbers = {}
    history = []
    for it in (1, 2):
        em = round(rng.uniform(0.3, 0.9), 3)
        numbers[it] = em
        folder = root / f"iteration_{it}"
        metrics = {
            "base": {
                "n": 10,
                "exact_match": 0.1,
                "tool_name_accuracy": 0.2,
                "errors": {"no_call": 9},
                "per_tool": {"get_weather": 0.0, "set_timer": 0.2},
            },
            "adapter": {
                "n": 10,
                "exact_match": em,
                "tool_name_accuracy": 0.9,
                "errors": {"value_error": 3},
                "per_tool": {"get_weather": em, "set_timer": 1.0},
            },
            "heldout_examples": 10,
            "train_examples": 40 * it,
            "training": {
                "steps": 7,
                "final_train_loss": 0.4,
                "best_val_loss": 0.5,
                "seconds": 12.0,
                "hyperparameters": {"epochs": 3, "learning_rate": 5e-4, "r": 16, "dropout": 0.05},
            },
            "judge": {
                "mean_score": {"base": 3.0, "adapter": 6.5},
                "pairwise": {"adapter": 2, "base": 0, "tie": 1},
                "agreement_with_exact_match": {"adapter": 0.75},
            },
        }
        _write(folder / "metrics.json", metrics)
        (folder / "train_log.jsonl").write_text(
            "\n".join(json.dumps({"step": s, "loss": 1.0 / s}) for s in range(1, 8))
            + "\n"
            + json.dumps({"step": 7, "val_loss": 0.5})
            + "\n"
        )
        failure = {
            "prompt": f"weather in Paris please {it}",
            "expected": [{"name": "get_weather"}],
            "predicted": [{"name": "set_timer"}],
            "error": "wrong_func_name",
            "tool": "get_weather",
            "parameter": None,
            "message": "called set_timer",
        }
        _write(
            folder / "error_analysis.json",
            {
                "total": 10,
                "failed": 1,
                "by_error": {"wrong_func_name": 1},
                "patterns": [
                    {
                        "error": "wrong_func_name",
                        "tool": "get_weather",
                        "detail": None,
                        "count": 1,
                        "share_of_failures": 1.0,
                        "examples": [failure],
                    }
                ],
                "failures": [failure],
            },
        )
        _write(
            folder / "data_report.json",
            {
                "accepted": 40,
                "per_style": {"single": 30, "no_call": 10},
                "per_tool": {"get_weather": 40},
                "rejected": {"ungrounded": 7},
                "rejection_rate": {"ungrounded": 0.15},
                "rejected_samples": {"ungrounded": ["a sample"]},
            },
        )
        (folder / "predictions.jsonl").write_text(
            json.dumps(
                {
                    "id": 0,
                    "model": "adapter",
                    "expected": [{"name": "get_weather", "arguments": {}}],
                    "tool_calls": [{"name": "set_timer", "arguments": {}}],
                }
            )
            + "\n"
        )
        history.append(
            {
                "iteration": it,
                "promoted": it == 2,
                "reason": f"reason-of-iteration-{it}",
                "decisions": [
                    {"rule": "more_data", "action": f"examples -> {50 * it}", "evidence": "exact_match below target"}
                ],
            }
        )
    (root / "history.jsonl").write_text("\n".join(json.dumps(h) for h in history) + "\n")
    (root / "ACTIVE").write_text("iteration_2\n")
    _write(root / "state.json", {"finished": True, "stop_reason": "iteration budget spent"})
    return numbers


def test_report_numbers_come_from_the_run_files(tmp_path):
    numbers = make_tool_run(tmp_path / "run", seed=7)
    written = build_report(tmp_path / "run")
    html = written["html"].read_text()
    markdown = written["markdown"].read_text()
    for em in numbers.values():
        assert f"{em:.3f}" in html and f"{em:.3f}" in markdown
    for text in ("reason-of-iteration-1", "examples -&gt; 100", "weather in Paris please 2", "iteration budget spent"):
        assert text in html
    assert "examples -> 100" in markdown
    assert "| 0.0005 |" in markdown  # the learning rate keeps its significant digits
    plots = [p for name, p in written.items() if name.endswith(".png")]
    assert {p.name for p in plots} == {"metrics.png", "per_key_accuracy.png", "loss.png", "confusion.png", "errors.png"}
    for path in plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"report_files/{path.name}" in markdown
    # Self-contained: every plot is inlined, nothing is fetched.
    assert html.count("data:image/png;base64,") == len(plots)
    assert 'src="http' not in html and 'src="report_files' not in html


def test_report_of_a_labeled_run_has_a_confusion_matrix(tmp_path):
    root = tmp_path / "run"
    _write(root / "config.json", {"task": "labels", "config": {"labels": "seeds.jsonl"}})
    confusion = {"billing": {"billing": 3, "bug": 1, "(other)": 0}, "bug": {"billing": 0, "bug": 4, "(other)": 0}}
    per_label = {
        "billing": {"precision": 1.0, "recall": 0.75, "f1": 0.857, "support": 4},
        "bug": {"precision": 0.8, "recall": 1.0, "f1": 0.889, "support": 4},
    }
    _write(
        root / "iteration_1" / "metrics.json",
        {
            "base": {"n": 8, "accuracy": 0.5, "macro_f1": 0.4, "per_label": per_label, "confusion": confusion},
            "adapter": {"n": 8, "accuracy": 0.875, "macro_f1": 0.873, "per_label": per_label, "confusion": confusion},
        },
    )
    written = build_report(root)
    assert "confusion.png" in written and "per_key_accuracy.png" in written
    assert "0.873" in written["markdown"].read_text()


def test_report_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    with pytest.raises(ConfigError, match="not a loraforge run folder"):
        build_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "runs/demo" in capsys.readouterr().err


def test_report_of_a_run_that_has_not_evaluated_yet(tmp_path):
    _write(tmp_path / "config.json", {"task": "tools", "config": {}})
    written = build_report(tmp_path)
    assert "No iteration has been evaluated yet" in written["html"].read_text()


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(page: Path, out: Path) -> Path:
    """A real headless Chromium renders the page; the screenshot is what a reader sees."""
    browser = chromium()
    if browser is None:
        if os.environ.get("LORAFORGE_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required here (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1100,6000",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def coloured_pixels(png: Path) -> int:
    """Saturated pixels: the plots paint them; the page's text and tables are black, white and grey."""
    from matplotlib.image import imread

    pixels = imread(png)[..., :3]
    return int(((pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.25).sum())


@pytest.mark.browser
def test_report_renders_its_plots_in_headless_chromium(tmp_path):
    make_tool_run(tmp_path / "run")
    written = build_report(tmp_path / "run")
    shot = screenshot(written["html"], tmp_path / "shot.png")
    with_plots = coloured_pixels(shot)
    # The same page with its images removed paints none of them: the count measures the plots.
    bare = tmp_path / "bare.html"
    html = written["html"].read_text()
    bare.write_text(html.replace("data:image/png;base64,", "data:image/png;base64,broken"))
    without = coloured_pixels(screenshot(bare, tmp_path / "bare.png"))
    # (A broken image still paints its small icon.)
    assert with_plots > 2000 and without * 50 < with_plots, (with_plots, without)


def test_report_shows_realism_uncovered_tools_and_the_synthetic_warning(tmp_path):
    from loraforge.generators.realism import summarise
    from loraforge.tools import ToolDefinition

    make_tool_run(tmp_path / "run", seed=3)
    tools = [ToolDefinition(name=n, description=f"{n} tool.") for n in ("get_weather", "set_timer")]
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"weather in city number {i} please"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "get_weather", "arguments": {}}}],
                },
            ],
            "meta": {"style": "single"},
        }
        for i in range(4)
    ]
    path = tmp_path / "run" / "iteration_2" / "data_report.json"
    report = json.loads(path.read_text())
    report["realism"] = summarise(rows, tools)
    report["uncovered_tools"] = [{"tool": "set_timer", "attempts": 31, "rejections": {"ungrounded": 20}, "samples": []}]
    path.write_text(json.dumps(report))
    html = build_report(tmp_path / "run")["html"].read_text()
    assert "Realism of the data (iteration 2)" in html
    assert "NOT COVERED: tool set_timer has no verified example after 31 attempts (ungrounded 20)" in html
    assert "weather in city number" in html  # the random examples
    assert "Every score in this report is on synthetic data" in html
    # with real requests, the report leads with them and drops the warning
    metrics_path = tmp_path / "run" / "iteration_2" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["real"] = {"rows": 20, "base": {"exact_match": 0.05}, "adapter": {"exact_match": 0.61}}
    metrics_path.write_text(json.dumps(metrics))
    html = build_report(tmp_path / "run")["html"].read_text()
    assert "on 20 real requests that decide promotion" in html and "0.61" in html
    assert "Every score in this report is on synthetic data" not in html


def test_a_hand_edited_active_file_does_not_break_the_report(tmp_path):
    make_tool_run(tmp_path / "run", seed=7)
    (tmp_path / "run" / "ACTIVE").write_text("iteration_x\n")
    written = build_report(tmp_path / "run")
    assert "iteration_x" in written["html"].read_text()  # shown as it is, and the details use the last iteration
