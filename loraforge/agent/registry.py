"""The adapter registry inside a run folder: iteration folders, the served adapter, history.

- `iteration_N/` holds each iteration's adapter (PEFT and GGUF) and its metrics;
- `final_adapter/` is a copy of the active adapter, ready to serve;
- `ACTIVE` names the iteration it came from (or `base` after a rollback to the base model);
- `history.jsonl` records every promotion decision and rollback.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.errors import ConfigError
from loraforge.files import append_jsonl, atomic_write_text, inside, read_json_object, read_jsonl, write_jsonl

PROMOTED_FILES = (
    Artifact.ADAPTER_WEIGHTS,
    Artifact.ADAPTER_CONFIG,
    Artifact.ADAPTER_GGUF,
    Artifact.METRICS,
    Artifact.CHAT_TEMPLATE,
    Artifact.ADAPTER_META.value,
    Artifact.EXPORT_REPORT,
    Artifact.SERVE_SCRIPT,  # the serving bundle: its paths are relative to the adapter's folder
    Artifact.MODELFILE,
    Artifact.MODEL_CARD,
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
        card = tmp / Artifact.MODEL_CARD.value
        if not card.is_file():  # an iteration exported without its bundle (the proof failed, or was skipped)
            card.write_text(
                f"Copy of the adapter of {Path(iteration_dir).name}. Serve it with llama-server --lora adapter.gguf.\n"
            )
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
    atomic_write_text(run_dir / ACTIVE, Path(iteration_dir).name + "\n")
    return final


ACTIVE = Artifact.ACTIVE.value


def servable(folder: Path) -> bool:
    """Whether an iteration folder holds an adapter to serve: an exported GGUF, or an encoder adapter (PEFT
    weights whose loraforge.json says model_kind encoder; encoders are served with PEFT, not llama.cpp)."""
    folder = Path(folder)
    if (folder / Artifact.ADAPTER_GGUF.value).is_file():
        return True
    meta = read_json_object(folder / Artifact.ADAPTER_META.value)
    return meta.get("model_kind") == "encoder" and (folder / Artifact.ADAPTER_WEIGHTS.value).is_file()


def active(run_dir: Path) -> str | None:
    """The active adapter's name ("iteration_N" or "base"), or None. The file's text names a folder, so it
    must be one of the run's own (a hand-edited ACTIVE cannot point elsewhere)."""
    path = Path(run_dir) / ACTIVE
    if not path.is_file():
        return None
    name = path.read_text(encoding="utf-8", errors="replace").strip()
    if name != "base" and not re.fullmatch(r"iteration_\d+", name):
        raise ConfigError(
            f"{path} names {name[:60]!r}, which is not an adapter of this run.",
            fix="Set it with `loraforge rollback RUN_DIR --to N` (or --to base).",
        )
    if name != "base":
        inside(run_dir, Path(name))
    return name


def rollback(run_dir: Path, to: str | int | None = None) -> str:
    """Make an earlier adapter active again. `to` is an iteration number, 'base', or None for the
    promoted adapter before the current one. Returns the new active name."""
    run_dir = Path(run_dir)
    current = active(run_dir)
    if current is None:
        raise ConfigError(
            f"{run_dir} has no active adapter to roll back.", fix="Pass a run folder with final_adapter/."
        )
    if to is None:
        history = read_jsonl(run_dir / Artifact.HISTORY.value) if (run_dir / Artifact.HISTORY.value).is_file() else []
        promoted = []  # the adapters that were served, in order: promoted ones, and held ones once approved
        for e in history:
            if e.get("event") == "approved" and re.fullmatch(r"iteration_\d+", str(e.get("to"))):
                promoted.append(str(e["to"]))
            elif (
                e.get("promoted") and not e.get("held") and isinstance(e.get("iteration"), int) and e["iteration"] >= 1
            ):
                promoted.append(f"iteration_{e['iteration']}")
        earlier = promoted[: promoted.index(current)] if current in promoted else []
        if not earlier:
            raise ConfigError(
                f"{current} is the first promoted adapter of {run_dir}; there is nothing earlier.",
                fix="Use --to base to serve the base model without an adapter, or --to N for iteration N.",
            )
        target = earlier[-1]
    elif str(to) == "base":
        target = "base"
    elif re.fullmatch(r"[0-9]+", str(to).strip()):  # not isdigit(): '²' is a digit that int() refuses
        target = f"iteration_{int(to)}"
    else:
        raise ConfigError(
            f"--to {to!r} names no adapter.", fix="Use an iteration number (--to 2) or --to base for the base model."
        )
    if target == "base":
        final = run_dir / Artifact.FINAL_ADAPTER.value
        if final.exists():
            shutil.rmtree(final)
        atomic_write_text(run_dir / ACTIVE, "base\n")
    else:
        folder = run_dir / target
        if not servable(folder):
            raise ConfigError(
                f"{folder} holds no exported adapter ({Artifact.ADAPTER_GGUF.value}, or an encoder's weights).",
                fix="Pick an iteration that finished its export phase; see history.jsonl.",
            )
        promote(run_dir, folder)
    record_history(
        run_dir, {"event": "rollback", "from": current, "to": target, "reason": f"rollback {current} -> {target}"}
    )
    return target


def hold(run_dir: Path, iteration_dir: Path) -> None:
    """Keep a promoted adapter waiting for `loraforge approve` instead of serving it (--require-approval)."""
    atomic_write_text(Path(run_dir) / Artifact.PENDING.value, Path(iteration_dir).name + "\n")


def pending(run_dir: Path) -> str | None:
    """The iteration that waits for approval ("iteration_N"), or None."""
    path = Path(run_dir) / Artifact.PENDING.value
    if not path.is_file():
        return None
    name = path.read_text(encoding="utf-8", errors="replace").strip()
    if not re.fullmatch(r"iteration_\d+", name) or not servable(Path(run_dir) / name):
        raise ConfigError(f"{path} names {name[:60]!r}, which is not an exported adapter of this run.")
    return name


def approve(run_dir: Path) -> str:
    """Serve the adapter that waits for approval: promote it, and record the approval."""
    run_dir = Path(run_dir)
    name = pending(run_dir)
    if name is None:
        raise ConfigError(f"No adapter of {run_dir} waits for approval.", fix="See history.jsonl for the decisions.")
    promote(run_dir, run_dir / name)
    (run_dir / Artifact.PENDING.value).unlink()
    record_history(run_dir, {"event": "approved", "to": name, "reason": f"{name} approved and served"})
    return name


def record_history(run_dir: Path, entry: dict[str, Any]) -> None:
    """Append an entry; an iteration's decision replaces one recorded before a crash, never doubles it."""
    path = Path(run_dir) / Artifact.HISTORY.value
    if "iteration" in entry and "event" not in entry and path.is_file():
        kept = [
            e for e in read_jsonl(path, tolerant=True) if e.get("event") or e.get("iteration") != entry["iteration"]
        ]
        write_jsonl(path, kept + [entry])
        return
    append_jsonl(path, [entry])
