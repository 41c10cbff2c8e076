"""The adapter registry inside a run folder: iteration folders, the promoted final adapter, history."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.files import append_jsonl

PROMOTED_FILES = (
    Artifact.ADAPTER_WEIGHTS,
    Artifact.ADAPTER_CONFIG,
    Artifact.ADAPTER_GGUF,
    Artifact.METRICS,
    Artifact.CHAT_TEMPLATE,
    "loraforge.json",
)


def promote(run_dir: Path, iteration_dir: Path) -> Path:
    """Copy an iteration's adapter into final_adapter/, replacing the old one in one rename."""
    run_dir = Path(run_dir)
    final = run_dir / Artifact.FINAL_ADAPTER.value
    tmp = Path(tempfile.mkdtemp(prefix=".final_adapter.", dir=run_dir))
    try:
        for name in PROMOTED_FILES:
            source = Path(iteration_dir) / str(name)
            if source.is_file():
                shutil.copy2(source, tmp / source.name)
        (tmp / "SOURCE").write_text(Path(iteration_dir).name + "\n")
        old = None
        if final.exists():
            old = run_dir / f".final_adapter.old.{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def record_history(run_dir: Path, entry: dict[str, Any]) -> None:
    append_jsonl(Path(run_dir) / "history.jsonl", [entry])
