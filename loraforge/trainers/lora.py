"""The LoRA training loop: one function, read top to bottom.

    loraforge train data.jsonl --basemodel model.gguf --outfile out/                 one CPU or GPU
    torchrun --nproc_per_node 2 -m loraforge train data.jsonl --basemodel ... --outfile out/   data parallel

Each optimizer step: set the learning rate, run the micro-batches (loss on supervised positions only),
average gradients across processes, clip, step, log, checkpoint now and then. At each epoch end: the
validation loss, keeping the best adapter weights, and early stopping. A killed run resumes from its last
checkpoint; an out-of-memory error halves the micro-batch and keeps the effective batch.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loraforge.errors import ConfigError, StopRequested
from loraforge.files import append_jsonl
from loraforge.trainers import fsdp
from loraforge.trainers.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint
from loraforge.trainers.config import DEFAULT_TARGETS, TrainConfig
from loraforge.trainers.formatting import IGNORE, Encoded


@dataclass
class TrainResult:
    steps: int
    best_val_loss: float | None
    final_train_loss: float
    seconds: float
    supervised_tokens: int
    skipped_too_long: int
    resumed_from_step: int = 0
    micro_batch_split: int = 1
    positions_run: int = 0  # positions computed by this process (a shared prefix counts once)
    dropped_checkpoint: str = ""  # why a checkpoint found in the folder was not resumed ("" when none was)


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def autocast_dtype(dtype: str, device: str):
    """The autocast dtype, or None for plain float32. bf16 was 17% faster on an AVX-512 CPU here."""
    import torch

    if dtype == "float32":
        return None
    if dtype in ("bfloat16", "float16"):
        return getattr(torch, dtype)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


# Rows whose lengths fall in the same bucket of this many tokens are batched in random order (length_batches).
LENGTH_BUCKET = 64


def prefix_key(example: Encoded) -> list[int]:
    """The prompt before the first trained token: rows that share it batch well together."""
    first = next((i for i, label in enumerate(example.labels) if label != IGNORE), len(example.labels))
    return example.input_ids[:first]


def length_batches(examples: list[Encoded], batch_size: int, rng: random.Random) -> list[list[Encoded]]:
    """Batches of rows that share their prompt prefix and have similar lengths, in random order.

    Sorting by prompt tokens puts rows with the same system prompt (the same tools) side by side, so each
    batch computes that prefix once (see `supervised_loss`). Inside such a run of rows, grouping by length
    keeps the padding of the part after the prefix small: that part runs per row, with gradients. The
    grouping is coarse (`LENGTH_BUCKET` tokens) and random inside a bucket: sorted by exact length, a batch
    held rows of one tool and one style, and bench_train measured a 4.5% higher held-out loss than random
    batches; with buckets the loss equals theirs at about the same speed as exact sorting.
    """
    order = sorted(examples, key=lambda e: (prefix_key(e), rng.random()))
    runs: list[list[Encoded]] = []
    for example in order:
        if runs and _shares_prompt(runs[-1][0], example):
            runs[-1].append(example)
        else:
            runs.append([example])
    for run in runs:
        run.sort(key=lambda e: (len(e.input_ids) // LENGTH_BUCKET, rng.random()))
    # One sequence cut into equal batches: every epoch has ceil(rows / batch_size) of them, which the step
    # count, the schedule and a resume's position all rely on.
    order = [example for run in runs for example in run]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def shuffled_batches(examples: list[Encoded], batch_size: int, rng: random.Random) -> list[list[Encoded]]:
    """Batches of rows drawn at random: no shared prompt, as most trainers batch."""
    order = list(examples)
    rng.shuffle(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _shares_prompt(a: Encoded, b: Encoded, min_prefix: int = 16) -> bool:
    """Whether two rows share at least half of the shorter prompt (the same system prompt, other requests)."""
    shared = common_prefix([a, b])
    return shared >= max(min_prefix, min(len(prefix_key(a)), len(prefix_key(b))) // 2)


def collate(batch: list[Encoded], pad_id: int, device: str):
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return ids.to(device), labels.to(device), mask.to(device)


def shared_prefix_length(ids: Any, mask: Any) -> int:
    """How many leading tokens every row of the batch has in common (and not padding)."""
    same = (ids == ids[:1]).all(0) & (mask == 1).all(0)
    return min(int(same.long().cumprod(0).sum()), ids.shape[1] - 1)


def positions_run(ids: Any, mask: Any, min_prefix: int = 16) -> int:
    """Token positions the model actually runs for a batch: a shared prefix once, the rest per row
    (padding included). What the benchmark's fraction of matmul peak counts."""
    batch, width = ids.shape
    prefix = shared_prefix_length(ids, mask) if batch > 1 else 0
    return prefix + batch * (width - prefix) if prefix >= min_prefix else batch * width


def _alora_offsets(model: Any, ids: Any) -> Any:
    config = getattr(model, "peft_config", {}).get(getattr(model, "active_adapter", "default"))
    if config is None or not getattr(config, "alora_invocation_tokens", None):
        return None
    from peft.tuners.lora.variants import calculate_alora_offsets

    return calculate_alora_offsets(model.peft_config, model.active_adapter, ids)


class PrefixCache:
    """Keys and values of shared prefixes that run through the frozen base, kept from one step to the next.

    With an activated LoRA, everything before the invocation is base-model computation: the system prompt
    listing the tools is the same for most rows and never changes during training, so it runs once for the
    whole training instead of once per batch. A batch reuses the longest kept prefix that starts its rows;
    the few least recently used ones are dropped."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._entries: dict[tuple[int, ...], tuple[Any, list[tuple[Any, Any]]]] = {}

    def longest(self, ids: list[int]) -> tuple[int, Any, list[tuple[Any, Any]]] | None:
        """(length, hidden states, per-layer keys and values) of the longest kept prefix of `ids`."""
        best = max((key for key in self._entries if tuple(ids[: len(key)]) == key), key=len, default=None)
        if best is None:
            return None
        entry = self._entries.pop(best)
        self._entries[best] = entry  # most recently used last
        return len(best), *entry

    def put(self, ids: list[int], hidden: Any, layers: list[tuple[Any, Any]]) -> None:
        self._entries[tuple(ids)] = (hidden, layers)
        while len(self._entries) > self.size:
            self._entries.pop(next(iter(self._entries)))


def supervised_loss(
    model: Any,
    ids: Any,
    labels: Any,
    mask: Any,
    min_prefix: int = 16,
    prefix_gradients: bool = True,
    prefix_cache: PrefixCache | None = None,
):
    """Summed cross-entropy at supervised positions, and how many positions there were.

    Two savings that keep results identical:
    - the LM head runs only on supervised rows, not on every token;
    - tokens that every row shares (the system prompt listing the tools) run once, and the other rows
      attend to that single copy of the keys and values; gradients flow through it to the adapter.
      With an activated LoRA the shared prefix precedes the invocation, so it runs through the frozen
      base without gradients at all (aLoRA's exact prefix cache).

    `prefix_gradients=False` runs the shared prefix (with the adapter) without gradients: the adapter then
    learns only from the positions after it. Much cheaper when the prefix is long (a prompt listing many
    tools), at the price of a truncated gradient; the loss itself is unchanged.
    """
    import torch
    import torch.nn.functional as F

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(causal_lm, causal_lm.base_model_prefix)
    offsets = _alora_offsets(model, ids)

    def hooks(alora):
        # PEFT hands aLoRA offsets to its layers only inside PeftModel.forward, through this private
        # context manager; the shared-prefix path calls the backbone itself, so it enters it directly. It has
        # no public twin (PEFT 0.17-0.21): tests/test_trainer.py::test_the_private_peft_hook_is_still_there
        # fails first if PEFT renames it.
        if offsets is None:
            return contextlib.nullcontext()
        return model.base_model._enable_peft_forward_hooks(alora_offsets=alora)

    batch, width = ids.shape
    checkpointing = getattr(causal_lm, "is_activation_checkpointing", None)  # its name from transformers 5.2x
    if checkpointing is None:
        checkpointing = causal_lm.is_gradient_checkpointing
    prefix = shared_prefix_length(ids, mask) if batch > 1 and not checkpointing else 0
    if offsets is not None and any(o is not None and o > width - prefix for o in offsets):
        prefix = 0  # an invocation inside the shared prefix: take the plain path
    if prefix >= min_prefix:
        from transformers import DynamicCache

        frozen = offsets is not None or not prefix_gradients
        cache_name = _cache_argument(backbone.__class__)
        kept = prefix_cache.longest(ids[0, :prefix].tolist()) if offsets is not None and prefix_cache else None
        if kept is not None and kept[0] >= min_prefix:
            prefix, head_hidden, layers = kept
        else:
            with torch.no_grad() if frozen else contextlib.nullcontext(), hooks([0]), _without_dropout(model, frozen):
                head = backbone(input_ids=ids[:1, :prefix], use_cache=True)
            head_hidden = head.last_hidden_state
            layers = [(layer.keys, layer.values) for layer in getattr(head, cache_name).layers]
            if offsets is not None and prefix_cache is not None:
                prefix_cache.put(ids[0, :prefix].tolist(), head_hidden, layers)
        shared = DynamicCache(config=causal_lm.config)  # per-layer kinds: sliding-window layers (Gemma 3) too
        for index, (keys, values) in enumerate(layers):
            shared.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), index)
        positions = torch.arange(prefix, width, device=ids.device)
        with hooks(offsets):
            tail = backbone(
                input_ids=ids[:, prefix:],
                attention_mask=mask,
                **{cache_name: shared},
                position_ids=positions.unsqueeze(0).expand(batch, -1),
                cache_position=positions,
                use_cache=True,
            )
        hidden = torch.cat([head_hidden.expand(batch, -1, -1), tail.last_hidden_state], dim=1)
    else:
        with hooks(offsets):
            hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum"), int(keep.sum())


@functools.cache
def _cache_argument(backbone_class: Any) -> str:
    """What the backbone calls its key/value cache: `cache` from transformers 5.2x on (where the old name
    `past_key_values` prints a deprecation warning on every call), `past_key_values` before. Read once per
    class, not on every micro-batch."""
    import inspect

    return "cache" if "cache" in inspect.signature(backbone_class.forward).parameters else "past_key_values"


@contextlib.contextmanager
def _without_dropout(model: Any, active: bool):
    """Eval mode for a pass that takes no gradients: its dropout masks would only add noise to the keys and
    values the trained rows attend to, and drawing them cost about a sixth of a CPU step."""
    was = model.training
    if active:
        model.eval()
    try:
        yield
    finally:
        model.train(was)


# Settings that change where and how fast training runs, not what it computes: a resume may change them.
# So may the process count: the checkpoint records how many of the epoch's batches are done, not steps.
RUNTIME_SETTINGS = ("device", "threads", "max_batch_tokens", "processes")


def checkpoint_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """Why a checkpoint cannot be resumed by this training ("" when it can): the settings that define the
    result and differ. Runtime settings may change."""
    keys = sorted((set(saved) | set(current)) - set(RUNTIME_SETTINGS))
    # A setting newer than the checkpoint had its default when the checkpoint was written.
    saved = {**{k: v for k, v in asdict(TrainConfig()).items() if k not in saved}, **saved}
    changed = [k for k in keys if saved.get(k) != current.get(k)]
    return ", ".join(f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)


def resumed_position(saved: dict[str, Any], saved_world: int, world: int, grad_accum: int, batches: int) -> Position:
    """The Position of a checkpoint for a training on `world` processes, with `batches` batches an epoch. A
    step takes grad_accum x world batches, so with another process count the epoch's batches done stay
    and the step count is re-based: the learning-rate schedule goes on from the same share of training."""

    def steps_per_epoch(processes: int) -> int:
        return math.ceil(batches / (grad_accum * processes))

    position = Position(**saved)
    if "batch" not in saved:  # written before batches were counted: steps count them
        position.batch = (position.step - position.epoch * steps_per_epoch(saved_world)) * grad_accum * saved_world
    if saved_world != world:
        position.step = position.epoch * steps_per_epoch(world) + math.ceil(position.batch / (grad_accum * world))
    return position


def learning_rate(step: int, total: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def split_batch(batch: list[Encoded], parts: int) -> list[list[Encoded]]:
    size = max(1, math.ceil(len(batch) / parts))
    return [batch[i : i + size] for i in range(0, len(batch), size)]


def token_budget(model: Any, config: TrainConfig, device: str) -> int:
    """Token positions one forward pass may hold. On CPU, half the free memory over a measured cost per
    position (about 4 MB for SmolLM2-135M's 30 layers of width 576 in training, scaled by depth x width)."""
    if config.max_batch_tokens > 0:
        return config.max_batch_tokens
    if not device.startswith("cpu"):
        return 1 << 30
    import psutil

    cfg = getattr(model, "config", None)
    depth_width = (getattr(cfg, "num_hidden_layers", 30) or 30) * (getattr(cfg, "hidden_size", 576) or 576)
    per_position = 4e6 * depth_width / (30 * 576)
    return max(512, int(psutil.virtual_memory().available * 0.5 / per_position))


def common_prefix(rows: list[Encoded]) -> int:
    """Leading tokens that every row has in common."""
    first = rows[0].input_ids
    length = min(len(r.input_ids) for r in rows)
    for i in range(length):
        token = first[i]
        if any(r.input_ids[i] != token for r in rows[1:]):
            return i
    return length


# A shared prefix run without gradients keeps only its keys and values (and one layer's activations at a
# time), not the activations the backward pass needs: a small share of a trained position's memory.
FROZEN_PREFIX_COST = 0.1


def piece_positions(rows: list[Encoded], min_prefix: int = 16, prefix_cost: float = 1.0) -> int:
    """Token positions a forward pass over `rows` holds: a shared prefix once (weighted by `prefix_cost`,
    below 1 when it runs without gradients), the rest per row (as `supervised_loss` runs it), padding
    included."""
    width = max(len(e.input_ids) for e in rows)
    prefix = common_prefix(rows) if len(rows) > 1 else 0
    if prefix < min_prefix:
        return len(rows) * width
    return int(prefix * prefix_cost) + len(rows) * (width - prefix)


def within_budget(
    pieces: list[list[Encoded]], budget: int, prefix_cost: float = 1.0, min_prefix: int = 16
) -> list[list[Encoded]]:
    """Split micro-batches until the positions one forward pass holds (a shared prefix of `min_prefix`
    tokens or more counted once) fit the budget; a single row always passes. Counting a shared prefix once
    matters: a prompt listing many tools is most of every row, and splitting its rows apart would compute it
    once per row."""
    out: list[list[Encoded]] = []
    for piece in pieces:
        current: list[Encoded] = []
        for row in piece:
            if current and piece_positions(current + [row], min_prefix, prefix_cost) > budget:
                out.append(current)
                current = []
            current.append(row)
        if current:
            out.append(current)
    return out


def evaluate_loss(
    model: Any,
    examples: list[Encoded],
    config: TrainConfig,
    pad_id: int,
    device: str,
    amp,
    prefix_cache: PrefixCache | None = None,
    budget: int | None = None,
) -> float:
    """Mean loss per supervised position; `budget` caps a forward pass (default: `token_budget`)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    budget = budget or token_budget(model, config, device)
    with torch.no_grad(), torch.autocast(device_type=device, dtype=amp or torch.float32, enabled=amp is not None):
        batches = length_batches(examples, config.batch_size, random.Random(0))
        for batch in within_budget(batches, budget, FROZEN_PREFIX_COST):
            ids, labels, mask = collate(batch, pad_id, device)
            loss, n = supervised_loss(model, ids, labels, mask, prefix_cache=prefix_cache)
            total, count = total + loss.item(), count + n
    model.train()
    return total / max(1, count)


def lora_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group under torchrun (gloo on CPU, nccl on GPU)."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def across(value: float, world: int, device: str = "cpu", op: str = "max") -> float:
    """`value`'s maximum (or, with op "min", minimum) over the processes. `device` is this process's
    training device."""
    if world == 1:
        return value
    import torch
    import torch.distributed as dist

    vote = torch.tensor([float(value)], device=device)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.MIN)
    return float(vote.item())


def agree(flag: bool, world: int, device: str = "cpu") -> bool:
    """True on every process when it is true on any: processes stop at the same step, or none would finish
    the collective that the others wait in."""
    return bool(across(1.0 if flag else 0.0, world, device))


def wait_for_all(world: int) -> None:
    """Block until every training process gets here (nothing to wait for in a single process)."""
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def loss_module(
    model: Any, config: TrainConfig, prefix_cache: PrefixCache | None, device: str, world: int, min_prefix: int = 16
) -> Any:
    """`supervised_loss` of `model` as a module: `module(ids, labels, mask)` -> (summed loss, tokens).

    On several processes it is wrapped in torch's DistributedDataParallel, which averages the adapter's
    gradients across processes during the backward pass of a step's last micro-batch (in buckets, not
    tensor by tensor). The loss calls the backbone in pieces (a shared prefix, then the rows' tails), so it
    is the loss, not the model, that DDP wraps: DDP only synchronises passes through its own forward.

    With `config.fsdp` the sharded layers exchange gradients themselves (trainers/fsdp.py), and the caller
    makes every row run whole (`min_prefix`): a shared prefix would make a process's count of layer passes
    depend on its own rows."""
    import torch

    class SupervisedLoss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: Any, labels: Any, mask: Any) -> tuple[Any, int]:
            return supervised_loss(
                self.model,
                ids,
                labels,
                mask,
                min_prefix=min_prefix,
                prefix_gradients=config.prefix_gradients,
                prefix_cache=prefix_cache,
            )

    module = SupervisedLoss()
    if world == 1 or config.fsdp:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=ids)


@dataclass
class Position:
    """Where training stands: everything besides weights and optimizer that a resume restores."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of this epoch done, by all processes together
    best_val: float = math.inf
    best_state: dict[str, Any] | None = None
    bad_epochs: int = 0
    split: int = 1  # micro-batches per batch, doubled after each out-of-memory error


def place(config: TrainConfig, rank: int, world: int) -> tuple[str, Any]:
    """The device this process trains on (one GPU per process under torchrun) and its autocast dtype."""
    import torch

    device = pick_device(config.device)
    if device == "cuda" and world > 1:
        device = f"cuda:{rank % torch.cuda.device_count()}"
        torch.cuda.set_device(device)  # NCCL's collectives run on the current device
    if device == "cpu":
        torch.set_num_threads(config.threads or max(1, (os.cpu_count() or 1) // world))
    return device, autocast_dtype(config.dtype, device.split(":")[0])


def split_rows(rows: list[Encoded], config: TrainConfig) -> tuple[list[Encoded], list[Encoded], int]:
    """(validation rows, training rows, rows skipped as too long or unsupervised), shuffled by the seed."""
    kept = [e for e in rows if len(e.input_ids) <= config.max_length and e.supervised > 0]
    random.Random(config.seed).shuffle(kept)
    n_val = int(len(kept) * config.val_fraction) if len(kept) >= 10 else 0
    if n_val >= len(kept):
        raise ValueError("no training examples fit within max_length")
    return kept[:n_val], kept[n_val:], len(rows) - len(kept)


def with_lora(model: Any, config: TrainConfig, device: str, adapter_extra: dict[str, Any] | None) -> Any:
    """`model` on `device` wrapped as a PEFT model with a fresh LoRA (or aLoRA) of `config`'s shape."""
    from peft import LoraConfig, get_peft_model

    peft_config = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,  # type: ignore[arg-type]  # PEFT types it int, and takes a float
        lora_dropout=config.dropout,
        target_modules=config.target_modules or DEFAULT_TARGETS,
        bias="none",
        task_type="CAUSAL_LM",
        **(adapter_extra or {}),
    )
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return get_peft_model(model.to(device), peft_config)


def start_from(model: Any, folder: Path, config: TrainConfig) -> None:
    """Load a trained adapter's LoRA weights into `model` (a warm start). It must have this training's rank,
    alpha and adapted modules; anything else is a ConfigError that names the difference."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    weights, settings = folder / "adapter_model.safetensors", folder / "adapter_config.json"
    if not weights.is_file() or not settings.is_file():
        raise ConfigError(f"{folder} holds no trained adapter (adapter_model.safetensors and adapter_config.json).")
    saved = json.loads(settings.read_text(encoding="utf-8"))
    if (saved.get("r"), float(saved.get("lora_alpha") or 0)) != (config.r, float(config.alpha)):
        raise ConfigError(
            f"{folder} is a LoRA of rank {saved.get('r')} and alpha {saved.get('lora_alpha')}; this training "
            f"has rank {config.r} and alpha {config.alpha}, so it cannot start from it."
        )
    state = load_file(str(weights))
    ours = get_peft_model_state_dict(model)
    differ = sorted(set(state) ^ set(ours)) or sorted(k for k in ours if ours[k].shape != state[k].shape)
    if differ:
        raise ConfigError(
            f"{folder} adapts other layers than this training ({len(differ)} tensors differ, e.g. {differ[0]}), "
            "so it cannot start from it."
        )
    set_peft_model_state_dict(model, state)


def set_weights(model: Any, state: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in state:
                param.copy_(state[name])


def train_lora(
    model: Any,
    pad_id: int,
    train: list[Encoded],
    config: TrainConfig,
    out_dir: Path,
    *,
    log_path: Path | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    adapter_extra: dict[str, Any] | None = None,
    checkpoint_every: float = 60.0,
    should_stop: Callable[[], bool] | None = None,
    init_adapter: Path | None = None,
) -> TrainResult:
    """Train a LoRA on `model` (a plain causal LM) and save the best adapter to `out_dir`.

    `should_stop` is polled after every step; when it turns true a checkpoint is saved and
    StopRequested is raised, so that a resumed run continues from that step. `init_adapter`, a trained
    adapter folder of the same shape, starts the training from its weights instead of a fresh LoRA."""
    import torch

    rank, world = distributed()
    lead = rank == 0  # the process that logs, reports and writes files
    torch.manual_seed(config.seed)
    device, amp = place(config, rank, world)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    val, train_set, skipped = split_rows(train, config)
    sharded = config.fsdp and world > 1  # every row then runs whole (see loss_module)
    # A model to shard stays on the CPU until its layers are cut up: whole, it may not fit on the device.
    model = with_lora(model, config, "cpu" if sharded else device, adapter_extra)
    if init_adapter is not None:
        start_from(model, init_adapter, config)  # a checkpoint of this training, if any, overrides it below
    shards = fsdp.shard(model, device, world) if config.fsdp else None
    budget = token_budget(model, config, device)
    if sharded:  # the same micro-batches on every process, so the same collectives
        budget = int(across(budget, world, device, op="min"))
    min_prefix = sys.maxsize if sharded else 16
    # Before an aLoRA's invocation the adapter is off: shared prompts are base computation, kept across steps.
    prefix_cache = PrefixCache() if config.adapter == "alora" else None
    prefix_cost = 1.0 if config.prefix_gradients else FROZEN_PREFIX_COST
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    per_step = config.grad_accum * world  # batches in one optimizer step, across processes
    batches_per_epoch = math.ceil(len(train_set) / config.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / per_step)
    total_steps = steps_per_epoch * config.epochs

    def log(record: dict[str, Any]) -> None:
        if lead and log_path:
            append_jsonl(log_path, [record])

    # Resume from a checkpoint of this same training, if one is there.
    at = Position()
    checkpoint = load_checkpoint(out_dir)
    dropped = ""
    if checkpoint is not None and "position" not in checkpoint:
        dropped = "written by an older loraforge"
    elif checkpoint is not None:
        dropped = checkpoint_mismatch(checkpoint["config"], asdict(config))
    if dropped:
        if lead and log_path:
            log_path.unlink(missing_ok=True)  # the dropped training's steps are not this one's
        log({"dropped_checkpoint": dropped})
    elif checkpoint is not None and shards is not None:
        shards.load_weights(checkpoint["lora"])
        shards.load_optimizer_state(optimizer, checkpoint["optimizer"])
    elif checkpoint is not None:
        set_weights(model, checkpoint["lora"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint is not None and not dropped:
        saved_world = checkpoint["world"]
        at = resumed_position(checkpoint["position"], saved_world, world, config.grad_accum, batches_per_epoch)
        torch.set_rng_state(checkpoint["rng"])  # dropout masks continue exactly where they stopped
        if saved_world != world:
            log({"step": at.step, "resumed_with_processes": f"{saved_world} -> {world}"})
    resumed_from, sup_tokens, last_loss, run_tokens = at.step, 0, math.nan, 0
    started, last_save = time.perf_counter(), time.perf_counter()

    def checkpoint_now() -> None:
        """Everything a resume needs: config, adapter, optimizer, position, RNG. The first process writes it;
        sharded, every process takes part in gathering the weights and optimizer state."""
        if shards is None and not lead:
            return
        weights = shards.weights() if shards is not None else lora_state(model)
        moments = shards.optimizer_state(optimizer) if shards is not None else optimizer.state_dict()
        if lead:
            state = {"lora": weights, "optimizer": moments, "rng": torch.get_rng_state()}
            position = dict(vars(at))
            save_checkpoint(out_dir, {"config": asdict(config), "world": world, "position": position, **state})

    compute_loss = loss_module(model, config, prefix_cache, device, world, min_prefix)

    def forward_backward(group: list[list[Encoded]]) -> tuple[float, int, int]:
        """Gradients of this process's share of a step's batches, accumulated and, on several processes,
        averaged across them in the last backward pass; (summed loss, supervised tokens, positions)."""
        group_tokens = sum(e.supervised for b in group for e in b)
        mine = group[rank::world]
        pieces = [
            piece
            for batch in mine
            for piece in within_budget(split_batch(batch, at.split), budget, prefix_cost, min_prefix)
        ]
        # The epoch's last step can leave a process without a batch: it joins with weight 0. Sharded, every
        # process runs as many micro-batches as the busiest one, since each layer pass is a collective.
        work = [(piece, 1.0) for piece in pieces] or [(group[0][:1], 0.0)]
        if shards is not None:
            work += [(group[0][:1], 0.0)] * (int(across(len(work), world, device)) - len(work))
        loss_sum, tokens, positions = 0.0, 0, 0
        for index, (piece, weight) in enumerate(work):
            last = index == len(work) - 1
            if shards is not None:
                shards.gradient_sync(last)
            plain = last or world == 1 or shards is not None
            with contextlib.nullcontext() if plain else compute_loss.no_sync():
                with torch.autocast(
                    device_type=device.split(":")[0], dtype=amp or torch.float32, enabled=amp is not None
                ):
                    ids, labels, mask = collate(piece, pad_id, device)
                    loss, n = compute_loss(ids, labels, mask)
                (loss * (weight / max(1, group_tokens) * world)).backward()
            if weight:
                positions += positions_run(ids, mask, min_prefix)
                loss_sum, tokens = loss_sum + loss.item(), tokens + n
        return loss_sum, tokens, positions

    batch_rows = length_batches if config.batching == "shared-prompt" else shuffled_batches
    while at.epoch < config.epochs:
        # The batch order of an epoch depends only on the seed and the epoch: a resume replays it exactly.
        batches = batch_rows(train_set, config.batch_size, random.Random(config.seed * 1000 + at.epoch))
        groups = [batches[i : i + per_step] for i in range(at.batch, len(batches), per_step)]
        for group in groups:
            lr = learning_rate(at.step, total_steps, config)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            t0 = time.perf_counter()
            while True:
                try:
                    loss_sum, tokens, positions = forward_backward(group)
                    break
                except (RuntimeError, MemoryError) as error:
                    # Sharded, the other processes wait in this one's collective: no retry can line up.
                    if not is_out_of_memory(error) or at.split >= config.batch_size or sharded:
                        raise
                    # Halve the micro-batch, keep the effective batch: the same examples per step.
                    optimizer.zero_grad(set_to_none=True)
                    at.split *= 2
                    if device.startswith("cuda"):
                        torch.cuda.empty_cache()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            at.step += 1
            at.batch += len(group)
            sup_tokens, run_tokens = sup_tokens + tokens, run_tokens + positions
            last_loss = loss_sum / max(1, tokens)
            dt = time.perf_counter() - t0
            record = {
                "step": at.step,
                "epoch": at.epoch + 1,
                "loss": last_loss,
                "lr": lr,
                "tokens_per_s": sum(len(e.input_ids) for b in group[rank::world] for e in b) / dt,
                "supervised_tokens_per_s": tokens / dt,
                "micro_batch_split": at.split,
                "total_steps": total_steps,
            }
            log(record)
            if lead and progress:
                progress(at.step, total_steps, record)
            stopping = agree(should_stop is not None and should_stop(), world, device)
            due = stopping or time.perf_counter() - last_save > checkpoint_every
            if shards is not None:
                due = agree(due, world, device)  # every process takes part in a sharded checkpoint
            if due:
                checkpoint_now()
                last_save = time.perf_counter()
            if stopping:
                # The checkpoint is whole on disk before any process leaves: a process that sent its last
                # shard and tore its process group down could abort the lead mid-receive.
                wait_for_all(world)
                raise StopRequested(f"training stopped at step {at.step}; checkpoint saved")

        # End of an epoch: validate, keep the best adapter so far, stop early when it stopped improving.
        at.epoch, at.batch = at.epoch + 1, 0
        if val:
            val_loss = evaluate_loss(model, val, config, pad_id, device, amp, prefix_cache, budget if sharded else None)
            if sharded:  # one decision on every process: keeping the best weights is a collective
                val_loss = across(val_loss, world, device)
            log({"step": at.step, "epoch": at.epoch, "val_loss": val_loss})
            if val_loss < at.best_val:
                best = shards.weights() if shards is not None else lora_state(model)
                at.best_val, at.best_state, at.bad_epochs = val_loss, best, 0
            else:
                at.bad_epochs += 1
        checkpoint_now()
        if at.bad_epochs >= config.patience:
            break

    if at.best_state is not None and shards is not None:
        shards.load_weights(at.best_state)
    elif at.best_state is not None:
        set_weights(model, at.best_state)
    whole = shards.weights() if shards is not None else None
    if lead:
        save_adapter(model, out_dir, whole)
        remove_checkpoint(out_dir)
    wait_for_all(world)  # the adapter is on disk before any process moves on
    return TrainResult(
        steps=at.step,
        best_val_loss=None if at.best_val == math.inf else at.best_val,
        final_train_loss=last_loss,
        seconds=time.perf_counter() - started,
        supervised_tokens=sup_tokens,
        positions_run=run_tokens,
        skipped_too_long=skipped,
        resumed_from_step=resumed_from,
        dropped_checkpoint=dropped,
        micro_batch_split=at.split,
    )


def save_adapter(model: Any, out_dir: Path, weights: dict[str, Any] | None = None) -> None:
    """Save the PEFT adapter files atomically: into a temporary folder, then renamed into place. `weights`,
    the whole LoRA weights by parameter name, stand in for the model's own (sharded ones)."""
    import shutil
    import tempfile

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter.", dir=out_dir))
    try:
        model.save_pretrained(tmp, state_dict=weights)
        (tmp / "README.md").unlink(missing_ok=True)  # PEFT's stub card; the serving bundle writes loraforge's
        for item in tmp.iterdir():
            os.replace(item, out_dir / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
