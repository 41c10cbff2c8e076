"""Training in several processes, data parallel: the run writes a job file and launches
`python -m torch.distributed.run --standalone --nproc_per_node N -m loraforge.trainers.launch JOB`.

Each process trains on its share of every step's batches and the gradients are averaged (trainers/lora.py),
so that N processes take the steps one process would take with an N times larger batch. The first process
writes the adapter and the logs. A stop request reaches the processes through a file in the output folder,
and they agree to stop at the same step, with a checkpoint, so that a resumed run continues there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.errors import LoraforgeError, StopRequested
from loraforge.files import atomic_write_json, read_json, read_jsonl, write_jsonl
from loraforge.trainers.config import TrainConfig
from loraforge.trainers.lora import TrainResult

JOB, ROWS, LOG = ".train_job.json", ".train_rows.jsonl", "train_processes.log"
STOP, STOPPED = ".train_stop", ".train_stopped"  # asked to stop; stopped at a step, with a checkpoint


def launch(
    rows: list[dict[str, Any]],
    base: Path,
    config: TrainConfig,
    out_dir: Path,
    *,
    extra_meta: dict[str, Any] | None = None,
    chat_template: str | None = None,
    on_step: Callable[[int, int, dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    init_adapter: Path | None = None,
) -> TrainResult:
    """Train in `config.processes` processes on this machine and return the first process's result."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / STOP).unlink(missing_ok=True)
    write_jsonl(out_dir / ROWS, rows)
    job = {"rows": ROWS, "base": str(base), "config": asdict(config), "meta": extra_meta, "template": chat_template}
    job["init"] = str(init_adapter) if init_adapter else None
    atomic_write_json(out_dir / JOB, job)
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={config.processes}"]
    command += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    command += ["-m", "loraforge.trainers.launch", str(out_dir / JOB)]
    # gloo listens on the interface it is given: the loopback one, so that nothing outside this machine connects
    env = {**os.environ, "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", _loopback())}
    (out_dir / STOPPED).unlink(missing_ok=True)
    with open(out_dir / LOG, "ab") as log:
        # a session of their own: Ctrl-C reaches the run, which asks the processes to stop at a step boundary
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        seen = 0
        while process.poll() is None:
            time.sleep(1.0)
            if should_stop is not None and should_stop():
                (out_dir / STOP).touch()  # the processes save a checkpoint and leave at the same step
            seen = _report(out_dir, seen, on_step)
        _report(out_dir, seen, on_step)
    (out_dir / STOP).unlink(missing_ok=True)
    if process.returncode == 0 and (out_dir / STOPPED).exists():  # they stopped, with a checkpoint
        (out_dir / STOPPED).unlink()
        raise StopRequested(f"training in {config.processes} processes stopped; checkpoint saved")
    if process.returncode != 0:
        tail = (out_dir / LOG).read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        raise LoraforgeError(
            f"Training in {config.processes} processes failed (exit {process.returncode}):\n" + "\n".join(tail),
            fix=f"The whole log is {out_dir / LOG}; training.processes 1 trains in this process.",
        )
    result = read_json(out_dir / Artifact.TRAIN_RESULT.value)
    return TrainResult(**{k: v for k, v in result.items() if k in TrainResult.__dataclass_fields__})


def _loopback() -> str:
    return "lo0" if sys.platform == "darwin" else "lo"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _report(out_dir: Path, seen: int, on_step: Callable[[int, int, dict[str, Any]], None] | None) -> int:
    """Hand the new lines of the training log to `on_step`; how many lines have been handed on."""
    path = out_dir / Artifact.TRAIN_LOG.value
    if on_step is None or not path.is_file():
        return seen
    records = [r for r in read_jsonl(path, tolerant=True) if "loss" in r]
    for record in records[seen:]:
        on_step(int(record["step"]), int(record.get("total_steps", 0)), record)
    return len(records)


def main(job_file: str) -> None:
    """One of the processes (run by torch.distributed.run)."""
    from loraforge.settings import build
    from loraforge.trainers.job import run_training

    job_path = Path(job_file)
    out_dir = job_path.parent
    job = read_json(job_path)
    config = build(TrainConfig, job["config"], "training")
    stop = out_dir / STOP
    run_training(
        read_jsonl(out_dir / job["rows"]),
        Path(job["base"]),
        config,
        out_dir,
        extra_meta=job.get("meta"),
        chat_template=job.get("template"),
        should_stop=stop.exists,
        init_adapter=Path(job["init"]) if job.get("init") else None,
    )


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except StopRequested:
        if int(os.environ.get("RANK", "0")) == 0:
            (Path(sys.argv[1]).parent / STOPPED).touch()
        sys.exit(0)
