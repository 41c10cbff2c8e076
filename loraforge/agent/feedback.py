"""Feedback kept in a SQLite database: user corrections accumulate in a table while the model serves, and
a run learns from them (seed 002's feedback loop).

A run takes a snapshot of the rows that no earlier run trained on into its folder (`feedback.jsonl`, and
a hash of each row's content in `feedback_rows.json`) before anything else, so that rows written while it
runs wait for the next run, and a resumed run trains on exactly the same rows. When the run has finished, its rows are
marked as trained in a table of loraforge's own (`loraforge_trained`) in the same database, in one
transaction; the user's table is only read, and nothing is ever deleted.

Columns read from the feedback table: `item` and `label`, or `premise`, `hypothesis` and `label`, or
`instruction`, `input` and `output`; `correct_label` (the user's correction) replaces `label` where given;
and, optionally, `original_label` (or `predicted`): what the model answered, from which the error-rate
trigger is computed.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loraforge.constants import Artifact
from loraforge.errors import ConfigError
from loraforge.files import atomic_write_json, claim_output_folder, read_json, write_jsonl
from loraforge.rows import FORMATS, labeled_row

if TYPE_CHECKING:
    from loraforge.agent.config import RunConfig

MARKS = "loraforge_trained"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _connect(db: Path) -> sqlite3.Connection:
    if not Path(db).is_file():
        raise ConfigError(f"The feedback database {db} does not exist.", fix="Pass the path of a SQLite file.")
    connection = sqlite3.connect(str(db), timeout=30.0)  # waits while a writer holds the database
    connection.row_factory = sqlite3.Row
    return connection


def _marks(connection: sqlite3.Connection) -> None:
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS {MARKS} (source TEXT NOT NULL, digest TEXT NOT NULL, run TEXT NOT NULL, "
        "at TEXT NOT NULL, PRIMARY KEY (source, digest))"
    )


def digest(raw: dict[str, Any]) -> str:
    """A feedback row's identity: a hash of its content. SQLite reuses and renumbers row ids (after a delete
    of the last row, or a VACUUM), so an id could name another correction later; the content cannot."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def new_rows(db: Path, table: str) -> list[tuple[str, dict[str, Any]]]:
    """(digest, labeled row) for every row of `table` that no finished run trained on, in insertion order."""
    if not _IDENTIFIER.fullmatch(table):
        raise ConfigError(f"feedback_table {table!r} is not a table name.", fix="Use letters, digits and _.")
    with closing(_connect(db)) as connection:
        try:
            with connection:
                _marks(connection)
            marked = {r[0] for r in connection.execute(f"SELECT digest FROM {MARKS} WHERE source = ?", (table,))}
            found = connection.execute(f"SELECT rowid AS row_id, * FROM {table} ORDER BY rowid").fetchall()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"The feedback database {db} could not be read ({exc}).") from None
    rows = []
    for record in found:
        raw = {k: record[k] for k in record.keys() if record[k] is not None and k != "row_id"}
        key = digest(raw)
        if key in marked:
            continue
        if "correct_label" in raw:  # the user's correction is the label to learn
            raw["label"] = raw["correct_label"]
        row = labeled_row(raw)
        if row is None:
            raise ConfigError(
                f"{db}, table {table}, row {record['row_id']}: columns {sorted(raw)} fit no labeled format.",
                fix="Give each row item (or premise and hypothesis) and label (or correct_label). "
                + "; ".join(FORMATS),
            )
        predicted = raw.get("original_label", raw.get("predicted"))
        if predicted is not None:
            row["predicted"] = str(predicted)
        rows.append((key, row))
    return rows


def snapshot(db: Path, table: str, run_dir: Path) -> Path:
    """The run's labeled rows: the snapshot already in `run_dir` (a resumed run), else a new one of the
    rows no run trained on yet. Refuses an empty snapshot."""
    from loraforge.agent.state import RUN_FOLDER_WRITES

    data, ids = run_dir / Artifact.FEEDBACK.value, run_dir / Artifact.FEEDBACK_ROWS.value
    if data.is_file() and ids.is_file():
        return data
    if not (run_dir / Artifact.RUN_CONFIG.value).is_file():  # a new run: never write into a user's folder
        claim_output_folder(run_dir, "--out", RUN_FOLDER_WRITES)
    rows = new_rows(db, table)
    if not rows:
        raise ConfigError(
            f"The feedback table {table} in {db} holds no rows that a run has not trained on yet.",
            fix="Wait for more feedback; rows that earlier runs trained on are kept but not used again.",
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(data, [row for _, row in rows])
    atomic_write_json(ids, {"db": str(Path(db).resolve()), "table": table, "digests": [key for key, _ in rows]})
    return data


def mark_trained(run_dir: Path) -> int:
    """Mark the run's snapshot as trained on (once the run has finished); how many rows were newly marked."""
    record = read_json(run_dir / Artifact.FEEDBACK_ROWS.value)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with closing(_connect(Path(record["db"]))) as connection, connection:
        _marks(connection)
        before = connection.total_changes
        connection.executemany(
            f"INSERT OR IGNORE INTO {MARKS} (source, digest, run, at) VALUES (?, ?, ?, ?)",
            [(record["table"], key, str(run_dir.resolve()), stamp) for key in record["digests"]],
        )
        return connection.total_changes - before


def prepare(config: RunConfig) -> RunConfig:
    """A feedback run's config with its snapshot as the labeled data; other configs unchanged."""
    if config.feedback_db is None:
        return config
    return replace(config, labels=snapshot(config.feedback_db, config.feedback_table, config.out))


def finish(config: RunConfig, final: dict[str, Any]) -> str | None:
    """After a feedback run: mark its rows as trained once it has trained; when a trigger held it back, drop
    the snapshot so that the next run reads the table afresh. A line for the user, or None."""
    if config.feedback_db is None:
        return None
    if "skipped" in final:
        for name in (Artifact.FEEDBACK, Artifact.FEEDBACK_ROWS):
            (config.out / name.value).unlink(missing_ok=True)
        return None
    marked = mark_trained(config.out)
    return f"{marked} feedback rows of {config.feedback_table} marked as trained on (kept in {config.feedback_db})."
