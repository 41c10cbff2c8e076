"""What every benchmark's raw results file records about where it came from: the command, the commit and
the machine (the CPU differs between hosts, and with it what kernels and dtypes are fast)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The short hash of the checkout the benchmark runs from ("" outside a git checkout)."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    """The CPU model, its cores, the vector instructions torch's kernels use here, and whether a GPU is seen."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    found: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count()}
    try:
        import torch

        found["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        found["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return found


def provenance(script: str) -> dict[str, Any]:
    """{"command", "commit", "machine"} of this run of `script` (its path under benchmarks/)."""
    return {"command": f"benchmarks/{script} " + " ".join(sys.argv[1:]), "commit": commit(), "machine": machine()}
