"""Training checkpoints: everything a resume needs, written atomically (temporary file, then rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.errors import ConfigError

CHECKPOINT = Artifact.CHECKPOINT.value


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
    # weights_only: a checkpoint holds tensors, numbers and strings only, so loading someone else's run
    # folder can never run code hidden in a pickle.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable or unsafe checkpoint is dropped, not trusted
        raise ConfigError(
            f"The training checkpoint {path} could not be loaded safely ({str(exc).splitlines()[0][:200]}).",
            fix=f"Delete {path} to train this iteration from the start.",
        ) from None


def remove_checkpoint(out_dir: Path) -> None:
    (Path(out_dir) / CHECKPOINT).unlink(missing_ok=True)
