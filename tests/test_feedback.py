"""Feedback in a real SQLite file: snapshots, marks, concurrent writers, a killed run, no row used twice."""

import sqlite3
import threading
from pathlib import Path

import pytest

from loraforge.agent import feedback
from loraforge.agent.config import RunConfig
from loraforge.errors import ConfigError
from loraforge.files import read_json, read_jsonl


def make_db(path, rows):
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE nli_corrections (premise TEXT, hypothesis TEXT, correct_label TEXT, original_label TEXT)"
        )
        db.executemany("INSERT INTO nli_corrections VALUES (?, ?, ?, ?)", rows)
    return path


def nli(i, label="supports", said="refutes"):
    return (f"The shop opens at {i} am.", f"It is open at {i} am.", label, said)


def count(path, table="nli_corrections"):
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def config_for(db, out, **changes):
    return RunConfig(feedback_db=db, feedback_table="nli_corrections", out=out, **changes)


def test_a_killed_run_resumes_on_its_snapshot_and_marks_its_rows_only_once_finished(tmp_path):
    db = make_db(tmp_path / "feedback.db", [nli(i, "supports" if i % 2 else "refutes") for i in range(12)])
    config = feedback.prepare(config_for(db, tmp_path / "run"))
    rows = read_jsonl(config.labels)
    assert len(rows) == 12 and rows[0]["item"].startswith("Premise: The shop opens at 0 am.")
    assert rows[0]["label"] == "refutes" and rows[0]["predicted"] == "refutes"  # correct_label, original_label
    with sqlite3.connect(db) as other:  # the model keeps serving: new corrections arrive during the run
        other.executemany("INSERT INTO nli_corrections VALUES (?, ?, ?, ?)", [nli(i) for i in range(100, 105)])
    # the run is killed here (nothing marked); `run --resume` prepares again from its saved config
    resumed = feedback.prepare(config_for(db, tmp_path / "run", labels=config.labels))
    assert resumed.labels == config.labels and read_jsonl(resumed.labels) == rows  # the same rows, not the new ones
    assert feedback.finish(resumed, {"best": {}}).startswith("12 feedback rows")
    assert feedback.finish(resumed, {"best": {}}).startswith("0 feedback rows")  # marking twice marks nothing
    later = feedback.prepare(config_for(db, tmp_path / "next"))
    assert [r["item"] for r in read_jsonl(later.labels)] == [
        f"Premise: The shop opens at {i} am.\nHypothesis: It is open at {i} am." for i in range(100, 105)
    ]
    assert count(db) == 17  # nothing is ever deleted


def test_rows_written_while_runs_snapshot_and_mark_are_neither_lost_nor_marked(tmp_path):
    db = make_db(tmp_path / "feedback.db", [nli(i) for i in range(20)])
    stop = threading.Event()
    written = []

    def writer():
        with sqlite3.connect(db, timeout=30) as connection:
            i = 1000
            while not stop.is_set():
                connection.execute("INSERT INTO nli_corrections VALUES (?, ?, ?, ?)", nli(i))
                connection.commit()
                written.append(i)
                i += 1
                stop.wait(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        runs = []
        for n in range(5):
            stop.wait(0.05)  # rows keep arriving between runs and during each
            config = feedback.prepare(config_for(db, tmp_path / f"run{n}"))
            runs.append(config)
            stop.wait(0.05)
            feedback.finish(config, {"best": {}})
    finally:
        stop.set()
        thread.join()
    snapshots = [set(read_json(c.out / "feedback_rows.json")["digests"]) for c in runs]
    assert sum(len(s) for s in snapshots) == len(set().union(*snapshots))  # no row trained on twice
    later = [row["item"] for c in runs[1:] for row in read_jsonl(c.labels)]
    assert later and all("opens at 1" in item for item in later)  # later runs took rows the writer added
    with sqlite3.connect(db) as connection:
        marked = {r[0] for r in connection.execute("SELECT digest FROM loraforge_trained")}
        total = connection.execute("SELECT COUNT(*) FROM nli_corrections").fetchone()[0]
    assert marked == set().union(*snapshots)  # exactly what the runs trained on is marked
    assert total == 20 + len(written)  # every row the writer wrote is still there
    unmarked = feedback.new_rows(db, "nli_corrections")
    assert len(unmarked) == total - len(marked)  # the rest wait for the next run


def test_a_run_held_back_by_a_trigger_leaves_its_rows_for_the_next(tmp_path):
    db = make_db(tmp_path / "feedback.db", [nli(i) for i in range(5)])
    config = feedback.prepare(config_for(db, tmp_path / "run", min_samples=100))
    assert feedback.finish(config, {"skipped": "Only 5 feedback samples"}) is None
    assert not (tmp_path / "run" / "feedback.jsonl").exists() and len(feedback.new_rows(db, "nli_corrections")) == 5


def test_bad_feedback_sources_are_named(tmp_path):
    db = make_db(tmp_path / "feedback.db", [])
    with pytest.raises(ConfigError, match="holds no rows that a run has not trained on"):
        feedback.prepare(config_for(db, tmp_path / "run"))
    with pytest.raises(ConfigError, match="not a table name"):
        feedback.new_rows(db, "x; DROP TABLE nli_corrections")
    with pytest.raises(ConfigError, match="could not be read"):
        feedback.new_rows(db, "missing_table")
    with pytest.raises(ConfigError, match="does not exist"):
        feedback.new_rows(tmp_path / "nope.db", "t")
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE odd (note TEXT)")
        connection.execute("INSERT INTO odd VALUES ('no label here')")
    with pytest.raises(ConfigError, match="table odd, row 1: columns"):
        feedback.new_rows(db, "odd")
    with pytest.raises(ConfigError, match="goes without tools or labels"):
        RunConfig(feedback_db=db, labels=tmp_path / "other.jsonl", out=tmp_path / "run")


def test_a_reused_row_id_is_still_new_feedback(tmp_path):
    """SQLite gives a deleted last row's id to the next insert: rows are known by their content, not by id."""
    db = make_db(tmp_path / "feedback.db", [nli(1), nli(2)])
    feedback.finish(feedback.prepare(config_for(db, tmp_path / "run")), {"best": {}})
    with sqlite3.connect(db) as connection:
        connection.execute("DELETE FROM nli_corrections WHERE rowid = 2")  # a correction taken back
        connection.execute("INSERT INTO nli_corrections VALUES (?, ?, ?, ?)", nli(3))  # gets rowid 2 again
        assert connection.execute("SELECT rowid FROM nli_corrections WHERE premise LIKE '%at 3 am%'").fetchone()[0] == 2
    assert [row["item"][:30] for _, row in feedback.new_rows(db, "nli_corrections")] == [
        "Premise: The shop opens at 3 a"
    ]


def test_a_feedback_run_resumes_from_another_working_folder(tmp_path, monkeypatch):
    """The saved config names no snapshot path: resuming with the folder spelled otherwise finds it."""
    db = make_db(tmp_path / "feedback.db", [nli(i) for i in range(4)])
    monkeypatch.chdir(tmp_path)
    config = feedback.prepare(config_for(db, Path("runs/fb")))
    saved = config.to_dict()
    assert saved["labels"] is None
    resumed = RunConfig(**{**saved, "out": str(tmp_path / "runs" / "fb")})
    assert feedback.prepare(resumed).labels == tmp_path / "runs" / "fb" / "feedback.jsonl"
