"""Encoder adapter settings: one dataclass, every field documented. Defaults follow the Lyra ADR (seed 002):
r=8, alpha=16, dropout 0.1 on the attention's query and value projections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from loraforge.errors import ConfigError

EncoderTask = Literal["sequence-classification", "embedding"]


@dataclass
class EncoderConfig:
    """How an encoder LoRA is trained: a classifier (its head trained with it) or an embedding model."""

    task: EncoderTask = field(
        default="sequence-classification",
        metadata={
            "help": "'sequence-classification' (item, or premise and hypothesis, with a label; the head is "
            "saved in the adapter) or 'embedding' (query and positive, optionally negative; contrastive)."
        },
    )
    r: int = field(default=8, metadata={"help": "LoRA rank."})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha; the update is scaled by alpha / r."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA input."})
    target_modules: list[str] = field(
        default_factory=lambda: ["query", "value"],
        metadata={"help": "Module names to adapt (BERT's attention projections are query, key, value)."},
    )
    epochs: int = field(default=20, metadata={"help": "Passes over the training rows (a few dozen rows need many)."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak AdamW learning rate (linear decay)."})
    batch_size: int = field(default=16, metadata={"help": "Rows per step; for embeddings, the in-batch negatives."})
    max_length: int = field(default=256, metadata={"help": "Longest input in tokens; longer ones are truncated."})
    temperature: float = field(
        default=0.05, metadata={"help": "Embedding task: softmax temperature of the contrastive loss."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for the LoRA and head initialisation and row order."})

    def __post_init__(self) -> None:
        for name in ("r", "epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"encoder.{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("learning_rate", "alpha", "temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"encoder.{name} must be above 0, got {getattr(self, name)}.")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"encoder.dropout must be in [0, 1), got {self.dropout}.")
        if not self.target_modules:
            raise ConfigError("encoder.target_modules is empty.", fix="Name modules, e.g. [query, value].")
