"""Sharded data parallel training (`training.fsdp`, torch's FSDP2 `fully_shard`), for a base model that
does not fit whole on each device.

Each process keeps 1/N of every decoder layer's weights, frozen base and LoRA alike, and gathers a layer's
whole weights only while that layer runs; the LoRA gradients are reduce-scattered, averaged, to the shard
that owns them. Only the decoder layers are sharded: the embeddings, final norm and output head stay whole
in every process. A LoRA never trains them (loraforge refuses such target modules), so none of their
gradients needs exchanging, and the loss may still call the backbone and the head directly.

Every process must run the same sequence of layer passes, since each pass of a sharded layer is a collective
(trainers/lora.py pads a step's micro-batches to the same count on every process, and takes the plain path
instead of the shared-prefix one, whose passes depend on a process's own rows). Weights and optimizer state
cross this boundary whole, keyed by parameter name, so that a checkpoint resumes on any process count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loraforge.errors import ConfigError, LoraforgeError


def decoder_layers(model: Any) -> list[Any]:
    """The repeated blocks of a (PEFT-wrapped) causal LM: the modules whose class transformers names as
    not to be split across devices (`_no_split_modules`), as accelerate does."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    kinds = set(getattr(causal_lm, "_no_split_modules", None) or ())
    layers = [m for m in causal_lm.modules() if type(m).__name__ in kinds]
    if not layers:
        raise LoraforgeError(
            f"FSDP found no decoder layers to shard in {type(causal_lm).__name__} (its _no_split_modules is "
            f"{sorted(kinds) or 'empty'}).",
            fix="Train this model with training.fsdp false (plain data parallel).",
        )
    return layers


@dataclass
class Sharded:
    """A model whose decoder layers are sharded over `world` processes; every method is collective (all
    processes call it, in the same order). Whole states live on the first process only."""

    model: Any
    layers: list[Any]
    world: int

    def _options(self, loading: bool) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        distributed = self.world > 1
        if loading:  # the first process's state is broadcast to the others' shards
            return StateDictOptions(full_state_dict=True, broadcast_from_rank0=distributed, strict=False)
        return StateDictOptions(full_state_dict=True, cpu_offload=distributed, ignore_frozen_params=True)

    def weights(self) -> dict[str, Any]:
        """The whole LoRA weights by parameter name, as `lora_state` has them (empty on other processes)."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state: dict[str, Any] = get_model_state_dict(self.model, options=self._options(loading=False))
        return {name: tensor.detach().clone() for name, tensor in state.items()}

    def load_weights(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(self.model, state, options=self._options(loading=True))

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.model, optimizer, options=self._options(loading=False))

    def load_optimizer_state(self, optimizer: Any, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(self.model, optimizer, state, options=self._options(loading=True))

    def gradient_sync(self, enabled: bool) -> None:
        """Reduce-scatter gradients in the coming backward pass (the step's last micro-batch) or keep
        accumulating them locally."""
        for layer in self.layers:
            if hasattr(layer, "set_requires_gradient_sync"):
                layer.set_requires_gradient_sync(enabled, recurse=False)


def shard(model: Any, device: str, world: int) -> Sharded:
    """Shard `model`'s decoder layers over the `world` processes of the current process group (none when
    `world` is 1: the layers stay whole, and states still cross as by name)."""
    layers = decoder_layers(model)
    if world == 1:
        return Sharded(model, layers, world)
    try:
        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor import DTensor
    except ImportError as error:
        raise ConfigError(
            f"training.fsdp needs torch's FSDP2 (torch 2.6 or newer): {error}.",
            fix="Upgrade torch, or train with training.fsdp false.",
        ) from error
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.split(":")[0], (world,))
    for layer in layers:
        # Each layer is its own FSDP root (the model is not wrapped), and torch keeps a root's weights
        # gathered from forward to backward unless told otherwise: free them after each pass.
        fully_shard(layer, mesh=mesh, reshard_after_forward=True)
    model.to(device)  # what stays whole (embeddings, norm, head); the shards are on the device already
    outside = [name for name, p in model.named_parameters() if p.requires_grad and not isinstance(p, DTensor)]
    if outside:
        raise ConfigError(
            f"training.fsdp shards the decoder layers only, and {outside[0]} (trained) is outside them: its "
            "gradients would not be exchanged.",
            fix="Target modules inside the decoder layers, or train with training.fsdp false.",
        )
    return Sharded(model, layers, world)
