"""Warm starts: which adapter an iteration's training starts from, and which earlier rows it replays.

Without a warm start each iteration trains a fresh adapter on every example so far. With one (the run's
`warm_start`), it starts from the best adapter and trains on its new rows plus a random replay of earlier
ones, so that what the best adapter learned is kept at a fraction of the cost.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.files import read_json


def replay(
    earlier: list[dict[str, Any]], seeds: list[dict[str, Any]], new: int, share: float, seed: int
) -> list[dict[str, Any]]:
    """The earlier rows a warm-started iteration trains on beside its `new` rows: every worked example of the
    task (`seeds`), and `share` x `new` of the other earlier rows drawn at random (all of them when fewer)."""
    own = {_key(row) for row in seeds}
    others = [row for row in earlier if _key(row) not in own]
    count = min(len(others), round(share * new))
    return list(seeds) + random.Random(seed).sample(others, count)


def mismatch(adapter_dir: Path, r: int, alpha: float, adapter: str) -> str:
    """Why a training of rank `r`, `alpha` and kind `adapter` cannot start from `adapter_dir` ("" when it can)."""
    path = Path(adapter_dir) / Artifact.TRAIN_RESULT.value
    if not path.is_file():
        return f"{path} is missing"
    trained = read_json(path).get("config", {})
    theirs = (trained.get("r"), float(trained.get("alpha") or 0), trained.get("adapter", "lora"))
    if theirs != (r, float(alpha), adapter):
        return f"it is a {theirs[2]} of rank {theirs[0]} and alpha {theirs[1]}, this one a {adapter} of {r} and {alpha}"
    return ""


def _key(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True)
