"""Training checkpoints: everything a resume needs, written atomically (temporary file, then rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(out_dir: Path, state: dict[str, Any]) -> None:
    import torch

    path = Path(out_dir) / CHECKPOINT
    tmp = path.with_name(f".{CHECKPOINT}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(out_dir: Path) -> dict[str, Any] | None:
    import torch

    path = Path(out_dir) / CHECKPOINT
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def remove_checkpoint(out_dir: Path) -> None:
    (Path(out_dir) / CHECKPOINT).unlink(missing_ok=True)
