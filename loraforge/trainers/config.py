"""Training settings: one dataclass, every field documented, checked on creation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from loraforge.errors import ConfigError

# Projections that the GGUF adapter format can express, per architecture family (all attention and MLP).
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainConfig:
    """How a LoRA adapter is trained. Defaults suit a 135M model on a 2-core CPU."""

    adapter: Literal["lora", "alora", "qlora"] = field(
        default="lora", metadata={"help": "Adapter type: 'lora', 'alora' (activated LoRA) or 'qlora' (CUDA)."}
    )
    r: int = field(default=16, metadata={"help": "LoRA rank, e.g. 8, 16 or 32."})
    alpha: float = field(default=32.0, metadata={"help": "LoRA alpha; the update is scaled by alpha / r."})
    # 0 by default: on this CPU dropout 0.05 made training 1.35x slower for no lower held-out loss
    # (benchmarks/results/train_dropout.json). The loop's `overfitting` rule raises it when a run needs it.
    dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input, e.g. 0.05; 0 turns it off."})
    target_modules: list[str] | None = field(
        default=None, metadata={"help": "Module names to adapt; None picks every attention and MLP projection."}
    )
    epochs: int = field(default=3, metadata={"help": "Passes over the training data."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak AdamW learning rate, e.g. 5e-4."})
    batch_size: int = field(default=8, metadata={"help": "Sequences per micro-batch."})
    grad_accum: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    max_length: int = field(
        default=4096,
        metadata={
            "help": "Longest sequence in tokens; longer ones are skipped, with a warning. A prompt that lists "
            "12 tools is about 1900 tokens with the default model."
        },
    )
    warmup_steps: int = field(default=4, metadata={"help": "Linear warm-up steps before the cosine decay."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    val_fraction: float = field(
        default=0.1, metadata={"help": "Share of the training rows kept aside for early stopping."}
    )
    patience: int = field(
        default=2, metadata={"help": "Epochs without a better validation loss before training stops."}
    )
    train_on: Literal["assistant", "all"] = field(
        default="assistant", metadata={"help": "Tokens the loss covers: 'assistant' turns only, or 'all'."}
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = field(default="auto", metadata={"help": "Training device."})
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto", metadata={"help": "Compute dtype; 'auto' uses bf16 autocast where the hardware has it."}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in the backward pass: less memory, slower."}
    )
    invocation_prompt: str | None = field(
        default=None,
        metadata={
            "help": "aLoRA only: the text after which the adapter switches on; default: the assistant "
            "turn opener of the chat template, e.g. '<|im_start|>assistant\\n'."
        },
    )
    answer_share: float = field(
        default=1.0,
        metadata={
            "help": "Share of tool-calling rows trained in full, with the tool results and the assistant's "
            "answer to them; the other rows end at the calls. Every row pays for its tokens, while a "
            "share of them teaches the answer: 0.3 trains generated data about a fifth faster."
        },
    )
    batching: Literal["shared-prompt", "shuffled"] = field(
        default="shared-prompt",
        metadata={
            "help": "How rows form batches: 'shared-prompt' puts rows with the same tools list together and "
            "computes that prompt once per batch (about 2x faster on a CPU, batches less random); "
            "'shuffled' draws them at random, as most trainers do."
        },
    )
    prefix_gradients: bool = field(
        default=True,
        metadata={
            "help": "Back-propagate through the prompt that a batch's rows share (the tools list). False runs "
            "it once without gradients: much faster with many tools, the adapter learning from the "
            "positions after it only."
        },
    )
    threads: int = field(default=0, metadata={"help": "Torch CPU threads; 0 means every core given to training."})
    processes: int = field(
        default=1,
        metadata={
            "help": "Training processes, data parallel (one per GPU, or CPU processes over gloo); above 1 the "
            "run launches them with torch.distributed.run. The batch per step stays batch_size x grad_accum "
            "x processes."
        },
    )
    fsdp: bool = field(
        default=False,
        metadata={
            "help": "Shard the base model's decoder layers across the training processes (torch FSDP2) "
            "instead of a whole copy in each: for a model that does not fit on one device. Each micro-batch "
            "then runs its whole prompt (no shared-prompt saving). A checkpoint resumes on any process count, "
            "not across this setting. With one process nothing is sharded."
        },
    )
    max_batch_tokens: int = field(
        default=0,
        metadata={
            "help": "Most token positions (rows x length) in one forward pass; bigger micro-batches are split "
            "and their gradients accumulated, so results do not change. 0: sized from free memory on CPU "
            "(the kernel kills a process that overcommits before Python sees an error), unlimited on GPU."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed for initialisation and data order."})
    use_rslora: bool = field(default=False, metadata={"help": "Not expressible in GGUF; refused."})
    use_dora: bool = field(default=False, metadata={"help": "Not expressible in GGUF; refused."})

    def __post_init__(self) -> None:
        if self.adapter not in ("lora", "alora", "qlora"):
            raise ConfigError(f"adapter must be 'lora', 'alora' or 'qlora', got {self.adapter!r}.")
        if self.use_rslora or self.use_dora:
            name = "rsLoRA" if self.use_rslora else "DoRA"
            raise ConfigError(
                f"{name} cannot be exported to a llama.cpp GGUF adapter, so loraforge refuses to train it.",
                fix="Use a plain LoRA (drop the option).",
            )
        if self.fsdp and self.adapter == "qlora":
            raise ConfigError(
                "fsdp cannot shard a 4-bit (qlora) base model.",
                fix="Use adapter 'lora' with fsdp, or qlora without it.",
            )
        for bad in ("embed_tokens", "lm_head", "wte", "embed_out"):
            if self.target_modules and any(bad in m for m in self.target_modules):
                raise ConfigError(
                    f"target_modules includes {bad!r}: embedding and output-head adapters cannot be expressed "
                    "in a llama.cpp GGUF adapter.",
                    fix="Target attention and MLP projections only.",
                )
        for name, value in vars(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value}.")
        for name in ("r", "epochs", "batch_size", "grad_accum", "max_length", "processes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}.")
        if self.alpha <= 0 or self.max_grad_norm <= 0:
            name = "alpha" if self.alpha <= 0 else "max_grad_norm"
            raise ConfigError(f"{name} must be positive, got {getattr(self, name)}.")
        if not 0 <= self.answer_share <= 1:
            raise ConfigError(f"answer_share must be between 0 and 1, got {self.answer_share}.")
        if not 0 <= self.val_fraction <= 0.5:
            raise ConfigError(
                f"val_fraction must be between 0 and 0.5, got {self.val_fraction}.", fix="0 turns it off."
            )
        for name in ("warmup_steps", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)}.")
        if self.patience < 1:
            raise ConfigError(f"patience must be at least 1, got {self.patience}.")
