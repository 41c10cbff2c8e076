"""The leaderboard cross-check, replayed without bfcl-eval: loraforge's verdict on each of the script's own
cases must still be the leaderboard checker's verdict recorded in benchmarks/results/crosscheck_bfcl.json."""

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
crosscheck = pytest.importorskip("crosscheck_bfcl")
RECORDED = {
    row["case"]: row for row in json.loads((BENCHMARKS / "results" / "crosscheck_bfcl.json").read_text())["rows"]
}


def test_every_case_has_a_recorded_leaderboard_verdict():
    """A case added to the script without re-running it against bfcl-eval has nothing to agree with."""
    labels = [item["label"] for item in crosscheck.CASES]
    assert len(labels) == len(set(labels)) >= 50
    assert set(labels) == set(RECORDED)


@pytest.mark.parametrize("item", crosscheck.CASES, ids=lambda item: item["label"])
def test_loraforge_still_agrees_with_the_recorded_leaderboard_verdict(item):
    ours = crosscheck.ours_verdict(item)
    assert ours.valid == RECORDED[item["label"]]["bfcl"]["valid"], ours.error
