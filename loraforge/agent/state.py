"""Run state on disk: which phases of which iteration are done. Saved atomically after every phase."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.files import atomic_write_json, read_json


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
