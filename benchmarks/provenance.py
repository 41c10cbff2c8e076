"""What every benchmark's raw results file records about where it came from: the command and the commit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The short hash of the checkout the benchmark runs from ("" outside a git checkout)."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip()


def provenance(script: str) -> dict[str, str]:
    """{"command", "commit"} of this run of `script` (its path under benchmarks/)."""
    return {"command": f"benchmarks/{script} " + " ".join(sys.argv[1:]), "commit": commit()}
