"""Run state on disk: which phases of which iteration are done. Saved atomically after every phase."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.errors import ConfigError
from loraforge.files import atomic_write_json, claim_output_folder, read_json


def _is_iteration(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _problem(data: Any) -> str | None:
    """What is wrong with a state.json, if anything. Iteration numbers name folders, so they must be
    positive integers: a hand-edited file cannot point a run outside its folder."""
    if not isinstance(data, dict):
        return f"it holds a {type(data).__name__}, not an object"
    if not _is_iteration(data.get("iteration", 1)):
        return f"iteration is {data.get('iteration')!r}, not a positive integer"
    if data.get("best_iteration") is not None and not _is_iteration(data["best_iteration"]):
        return f"best_iteration is {data['best_iteration']!r}, not a positive integer"
    done = data.get("done", {})
    if not isinstance(done, dict) or not all(
        isinstance(k, str) and k.isdigit() and isinstance(v, list) for k, v in done.items()
    ):
        return "done is not a mapping of iteration numbers to phase lists"
    return None


@dataclass
class RunState:
    """Progress of a run; a resumed run skips every phase recorded here."""

    done: dict[str, list[str]] = field(default_factory=dict)  # iteration -> finished phases
    iteration: int = 1  # the iteration in progress
    best_iteration: int | None = None
    stop_reason: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # iteration -> seconds spent in its phases
    phase_seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # iteration -> phase -> seconds
    phase_sizes: dict[str, dict[str, float]] = field(default_factory=dict)  # iteration -> phase -> its work (eta.py)
    history: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: bool = False

    @classmethod
    def load(cls, run_dir: Path) -> RunState:
        path = Path(run_dir) / Artifact.STATE.value
        if not path.is_file():
            return cls()
        data = read_json(path)
        problem = _problem(data)
        if problem:
            raise ConfigError(
                f"{path}: {problem}, so this is not a run state that loraforge wrote.",
                fix=f"Restore {path.name} from the run, or start a new run with another --out.",
            )
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def save(self, run_dir: Path) -> None:
        atomic_write_json(Path(run_dir) / Artifact.STATE.value, asdict(self))

    def add_time(self, iteration: int, seconds: float, phase: str | None = None, size: float = 1.0) -> None:
        self.seconds[str(iteration)] = self.seconds.get(str(iteration), 0.0) + seconds
        if phase is not None:
            self.phase_seconds.setdefault(str(iteration), {})[phase] = seconds
            self.phase_sizes.setdefault(str(iteration), {})[phase] = size

    def is_done(self, iteration: int, phase: str) -> bool:
        return phase in self.done.get(str(iteration), [])

    def mark(self, run_dir: Path, iteration: int, phase: str) -> None:
        phases = self.done.setdefault(str(iteration), [])
        if phase not in phases:
            phases.append(phase)
        self.save(run_dir)


# What a run writes at the top of its folder (besides config.json, its record).
RUN_FOLDER_WRITES = [
    Artifact.STATE.value,
    Artifact.CHAT_TEMPLATE.value,
    Artifact.SERVER_LOG.value,
    Artifact.REAL_HELDOUT.value,
    Artifact.FINAL_ADAPTER.value,
    Artifact.ACTIVE.value,
    Artifact.HISTORY.value,
    Artifact.TRIGGER.value,
    Artifact.HELDOUT.value,
    Artifact.REPORT_HTML.value,
    Artifact.REPORT_MD.value,
    Artifact.REPORT_FILES.value,
    Artifact.PENDING.value,
    Artifact.FEEDBACK.value,
    Artifact.FEEDBACK_ROWS.value,
    "iteration_1",
]


def claim_run_folder(run_dir: Path, identity: dict[str, Any], task: str, config: dict[str, Any]) -> None:
    """Record which run a folder holds (config.json), or check that it holds this one: a run folder belongs
    to one task and one model. A new run never overwrites a file that loraforge did not write."""
    path = run_dir / Artifact.RUN_CONFIG.value
    if not path.is_file():
        claim_output_folder(run_dir, "--out", RUN_FOLDER_WRITES)
    else:
        saved = read_json(path)
        if not isinstance(saved, dict) or "identity" not in saved:
            raise ConfigError(
                f"{path} is not a loraforge run record, so {run_dir} is not a run folder of loraforge's.",
                fix="Choose a new --out folder, or move that config.json away.",
            )
        if saved.get("identity") != identity:
            raise ConfigError(
                f"The run folder {run_dir} holds a run of another task or model.",
                fix="Choose a new --out folder, or delete the old run.",
            )
    atomic_write_json(path, {"identity": identity, "task": task, "config": config})
