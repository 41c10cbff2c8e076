"""Read a run folder into plain data for the report. Every number shown comes from these files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loraforge.constants import LABEL_METRICS, TOOL_METRICS, Artifact
from loraforge.errors import ConfigError
from loraforge.files import read_jsonl


@dataclass
class IterationData:
    """What one iteration folder holds; any part may be missing while a run is still going."""

    number: int
    metrics: dict[str, Any] | None = None
    train_log: list[dict[str, Any]] = field(default_factory=list)
    error_analysis: dict[str, Any] | None = None
    data_report: dict[str, Any] | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def scores(self) -> dict[str, Any]:
        """metrics.json's content, empty while the iteration has not been evaluated."""
        return self.metrics or {}


@dataclass
class RunData:
    run_dir: Path
    task: str  # "tools" or "labels"
    config: dict[str, Any]
    iterations: list[IterationData]
    history: list[dict[str, Any]]
    active: str | None
    state: dict[str, Any]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return LABEL_METRICS if self.task == "labels" else TOOL_METRICS

    @property
    def evaluated(self) -> list[IterationData]:
        return [it for it in self.iterations if it.metrics]

    @property
    def focus(self) -> IterationData | None:
        """The iteration the details are about: the active one, else the last evaluated one."""
        match = re.fullmatch(r"iteration_(\d+)", self.active or "")  # a hand-edited ACTIVE names nothing
        if match:
            number = int(match.group(1))
            for it in self.iterations:
                if it.number == number and it.metrics:
                    return it
        return self.evaluated[-1] if self.evaluated else None


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}).", fix="Re-run the phase that writes it.") from exc


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path, tolerant=True) if path.is_file() else []


def collect(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    config = _json(run_dir / Artifact.RUN_CONFIG.value)
    if config is None:
        raise ConfigError(
            f"{run_dir} is not a loraforge run folder (no {Artifact.RUN_CONFIG.value}).",
            fix="Pass the --out folder of a `loraforge run`, e.g. runs/demo.",
        )
    folders = sorted(
        (p for p in run_dir.glob("iteration_*") if p.is_dir() and p.name.split("_")[1].isdigit()),
        key=lambda p: int(p.name.split("_")[1]),
    )
    iterations = [
        IterationData(
            number=int(folder.name.split("_")[1]),
            metrics=_json(folder / Artifact.METRICS.value),
            train_log=_jsonl(folder / Artifact.TRAIN_LOG.value),
            error_analysis=_json(folder / Artifact.ERROR_ANALYSIS.value),
            data_report=_json(folder / Artifact.DATA_REPORT.value),
            predictions=_jsonl(folder / Artifact.PREDICTIONS.value),
        )
        for folder in folders
    ]
    active_file = run_dir / Artifact.ACTIVE.value
    return RunData(
        run_dir=run_dir,
        task=config.get("task") or ("labels" if config.get("config", {}).get("labels") else "tools"),
        config=config.get("config", {}),
        iterations=iterations,
        history=_jsonl(run_dir / Artifact.HISTORY.value),
        active=active_file.read_text().strip() if active_file.is_file() else None,
        state=_json(run_dir / Artifact.STATE.value) or {},
    )


def tool_confusion(predictions: list[dict[str, Any]], model: str = "adapter") -> dict[str, dict[str, int]]:
    """Expected first tool against predicted first tool, from the evaluation's prediction records."""
    matrix: dict[str, dict[str, int]] = {}
    for record in predictions:
        if record.get("model", "adapter") != model or record.get("expected") is None:
            continue
        expected = record["expected"][0]["name"] if record["expected"] else "(no call)"
        calls = record.get("tool_calls") or []
        predicted = calls[0]["name"] if calls else "(no call)"
        row = matrix.setdefault(expected, {})
        row[predicted] = row.get(predicted, 0) + 1
    return matrix


def worst_examples(analysis: dict[str, Any] | None, limit: int = 10) -> list[dict[str, Any]]:
    """Failures from the most frequent patterns first: what a reader should fix next."""
    if not analysis:
        return []
    out: list[dict[str, Any]] = []
    for pattern in analysis.get("patterns", []):
        for example in pattern.get("examples", []):
            out.append({**example, "pattern_count": pattern["count"]})
    return out[:limit]
