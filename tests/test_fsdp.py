"""Sharded training (training.fsdp): two gloo processes on a tiny random llama learn what one process
learns, and their checkpoint resumes on another process count."""

import json
import os
import socket
import time

import pytest
import torch.multiprocessing as mp
from test_trainer import config, examples
from tiny import tiny_model

from loraforge.errors import ConfigError, LoraforgeError
from loraforge.trainers import lora
from loraforge.trainers.config import TrainConfig
from loraforge.trainers.fsdp import decoder_layers

SAME = dict(epochs=3, dropout=0.0, val_fraction=0.25, seed=3)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _process(rank: int, world: int, port: int, out: str, settings: dict, stop_after: int) -> None:
    """One of `world` training processes, as torch.distributed.run would start it."""
    import torch.distributed as dist

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo"
    )
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return 0 < stop_after <= len(calls)

    model = tiny_model()
    try:
        result = lora.train_lora(model, 0, examples(), config(**settings), out, should_stop=should_stop)
        # After training, between passes, this process holds only its shard of a layer's weights.
        weight = model.model.layers[0].mlp.up_proj.weight
        local = weight.to_local() if hasattr(weight, "to_local") else weight
        if rank == 0:
            with open(os.path.join(out, "result.json"), "w") as f:
                record = {"steps": result.steps, "resumed_from_step": result.resumed_from_step}
                json.dump({**record, "rows": [local.shape[0], weight.shape[0]]}, f)
    except lora.StopRequested:
        pass
    finally:
        dist.destroy_process_group()


def in_two_processes(out, settings: dict, stop_after: int = 0, timeout: float = 300) -> None:
    """Train in two processes; a collective that does not line up fails the test instead of hanging it."""
    context = mp.spawn(_process, args=(2, _free_port(), str(out), settings, stop_after), nprocs=2, join=False)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise AssertionError(f"two-process training still running after {timeout} s (a deadlock?)")


def weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def gap(a, b) -> float:
    import numpy as np

    assert set(a) == set(b) and a
    return max(float(np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(a[k]), 1e-12)) for k in a)


def test_two_sharded_processes_learn_what_one_process_learns(tmp_path):
    """Same steps at the same effective batch (2 processes x 1 batch = 1 process x 2 accumulated), the best
    epoch kept, and the adapter equal up to float rounding; the layers really were sharded."""
    one = lora.train_lora(tiny_model(), 0, examples(), config(grad_accum=2, **SAME), tmp_path / "one")
    in_two_processes(tmp_path / "two", dict(fsdp=True, **SAME))
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    assert two["steps"] == one.steps == 3 * 2  # 9 training rows, batches of 4: 3 batches, 2 steps an epoch
    assert two["rows"] == [32, 64]  # half of the layer's 64 rows
    assert gap(weights(tmp_path / "one"), weights(tmp_path / "two")) < 1e-3
    assert json.loads((tmp_path / "two" / "adapter_config.json").read_text())["r"] == 4
    assert not (tmp_path / "two" / "checkpoint.pt").exists()


def test_a_sharded_checkpoint_resumes_on_the_same_and_on_another_process_count(tmp_path):
    """Two sharded processes stop after two steps; two processes resume and end where an uninterrupted
    training ends. Two others stop after one step, and one process (fsdp on, nothing to shard) resumes
    their checkpoint, whose weights and optimizer state are whole and named, from the next batch."""
    reference = lora.train_lora(tiny_model(), 0, examples(), config(grad_accum=2, **SAME), tmp_path / "ref")
    out = tmp_path / "same"
    in_two_processes(out, dict(fsdp=True, **SAME), stop_after=2)
    assert (out / "checkpoint.pt").is_file() and not (out / "adapter_model.safetensors").exists()
    in_two_processes(out, dict(fsdp=True, **SAME))
    resumed = json.loads((out / "result.json").read_text())
    assert (resumed["steps"], resumed["resumed_from_step"]) == (reference.steps, 2)
    assert gap(weights(tmp_path / "ref"), weights(out)) < 1e-3

    out = tmp_path / "other"
    in_two_processes(out, dict(fsdp=True, **SAME), stop_after=1)
    resumed = lora.train_lora(tiny_model(), 0, examples(), config(fsdp=True, **SAME), out, log_path=out / "log")
    # 2 of the first epoch's 3 batches were done; one process takes a batch a step, 3 steps an epoch.
    assert resumed.resumed_from_step == 2 and resumed.steps == 3 * 3
    log = [json.loads(line) for line in (out / "log").open()]
    assert {"step": 2, "resumed_with_processes": "2 -> 1"} in log
    assert (out / "adapter_model.safetensors").is_file() and not (out / "checkpoint.pt").exists()


def test_a_checkpoint_does_not_cross_the_fsdp_setting(tmp_path):
    """A plain checkpoint's optimizer state is keyed by position, a sharded one's by name: switching fsdp
    drops the checkpoint and says why, instead of loading the wrong moments."""
    with pytest.raises(lora.StopRequested):
        lora.train_lora(tiny_model(), 0, examples(), config(**SAME), tmp_path, should_stop=lambda: True)
    result = lora.train_lora(tiny_model(), 0, examples(), config(fsdp=True, **SAME), tmp_path)
    assert result.resumed_from_step == 0 and "fsdp False -> True" in result.dropped_checkpoint


def test_fsdp_refuses_a_four_bit_base_and_a_model_without_layers():
    with pytest.raises(ConfigError, match="qlora"):
        TrainConfig(adapter="qlora", fsdp=True)
    for kind in ("llama", "qwen2", "gemma3"):
        assert len(decoder_layers(tiny_model(kind))) == 2
    import torch

    with pytest.raises(LoraforgeError, match="no decoder layers"):
        decoder_layers(torch.nn.Linear(2, 2))
