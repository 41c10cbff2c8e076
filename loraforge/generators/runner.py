"""Generate a data file: resumable (rows are appended as they pass), with its data report beside it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loraforge.errors import ConfigError
from loraforge.files import append_jsonl, atomic_write_json, read_json_object, read_jsonl, write_jsonl
from loraforge.generators import realism


def report_path(data_path: Path) -> Path:
    return Path(data_path).with_name(Path(data_path).stem + ".report.json")


def load_partial(data_path: Path) -> list[dict[str, Any]]:
    """Rows an interrupted generation already kept; a last line torn by a kill is dropped from the file.

    A file that loraforge did not write (any other line that is not a generated row) is never touched:
    that is a ConfigError, so a wrong `--out` cannot empty someone's file. The same holds for the side
    report `<stem>.report.json`."""
    data_path = Path(data_path)
    _refuse_foreign_report(report_path(data_path))
    if not data_path.is_file():
        return []
    try:
        lines = [line for line in data_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        lines = ["\x00"]
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and rows:
                break  # torn by a kill while appending
            row = None
        if not (isinstance(row, dict) and isinstance(row.get("meta"), dict) and "index" in row["meta"]):
            raise ConfigError(
                f"{data_path}:{number}: this file exists and is not a loraforge data file, so loraforge will "
                "not write into it.",
                fix="Pass another --out, or move the file away (an interrupted generation resumes from its own "
                "output only).",
            )
        rows.append(row)
    if len(lines) != len(rows):
        write_jsonl(data_path, rows)
    return rows


def _refuse_foreign_report(path: Path) -> None:
    """The side report is overwritten at the end; a file of that name that loraforge did not write is not."""
    if not Path(path).exists():
        return
    try:
        ours = "requested" in read_json_object(path)
    except ConfigError:
        ours = False
    if not ours:
        raise ConfigError(
            f"{path} exists and is not a loraforge generation report, so loraforge will not overwrite it.",
            fix="Pass another --out, or move that file away.",
        )


async def generate_to_file(
    generator: Any,
    data_path: Path,
    count: int,
    *,
    first_index: int = 0,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    report_to: Path | None = None,
    max_rounds: int = 6,
) -> dict[str, Any]:
    """Fill `data_path` with `count` verified rows, resuming without duplicates.

    Example i always starts from the same seed, and a row is appended as soon as it passes, so a killed
    generation picks up where it stopped. Indices that give up are replaced by new ones (a few rounds).
    A tool that the teacher keeps failing on is named through `on_warning` while generation runs.
    """
    started = time.monotonic()
    if on_warning is not None and hasattr(generator, "on_warning"):
        generator.on_warning = on_warning
    existing = load_partial(data_path)
    generator.remember(existing)
    done = {row["meta"]["index"] for row in existing}
    kept = len(existing)

    def keep(row: dict[str, Any]) -> None:
        nonlocal kept
        append_jsonl(data_path, [row])
        kept += 1
        if on_row:
            on_row(row)

    next_index = first_index
    for _ in range(max_rounds):
        need = count - kept
        if need <= 0:
            break
        wanted: list[int] = []
        while len(wanted) < need:
            if next_index not in done:
                wanted.append(next_index)
            next_index += 1
        await generator.generate(wanted, on_example=keep)
    tools = getattr(generator, "tools", None)
    report = generator.stats.report([t.name for t in tools] if tools else None)
    report["requested"] = count
    report["kept_in_file"] = kept
    report["seconds"] = round(time.monotonic() - started, 1)
    made = kept - len(existing)
    report["examples_per_minute"] = round(60 * made / report["seconds"], 2) if report["seconds"] and made else None
    if tools:
        report["realism"] = realism.summarise(read_jsonl(data_path, tolerant=True), tools)
    atomic_write_json(report_to or report_path(data_path), report)
    return report
