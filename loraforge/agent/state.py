"""Run state on disk: which phases of which iteration are done. Saved atomically after every phase."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.errors import ConfigError
from loraforge.files import atomic_write_json, read_json


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

    def add_time(self, iteration: int, seconds: float) -> None:
        self.seconds[str(iteration)] = self.seconds.get(str(iteration), 0.0) + seconds

    def is_done(self, iteration: int, phase: str) -> bool:
        return phase in self.done.get(str(iteration), [])

    def mark(self, run_dir: Path, iteration: int, phase: str) -> None:
        phases = self.done.setdefault(str(iteration), [])
        if phase not in phases:
            phases.append(phase)
        self.save(run_dir)
