"""Training an encoder LoRA, top to bottom: load the base, wrap it with PEFT, loop over shuffled batches.

A classifier trains its new head with the LoRA (PEFT's `modules_to_save`, so the head is saved in the
adapter). An embedding model trains on (query, positive[, negative]) rows with a contrastive loss: each
query must find its own positive among every text of the batch (in-batch negatives, as in
sentence-transformers' MultipleNegativesRankingLoss).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from loraforge.encoders.config import EncoderConfig
from loraforge.encoders.data import LabeledText, Pair, tokenize
from loraforge.encoders.embed import encode
from loraforge.encoders.model import load_classifier, load_embedder, load_tokenizer
from loraforge.errors import ConfigError

OnStep = Callable[[int, int, float], None]  # (step, total steps, loss)


@dataclass
class Trained:
    model: Any  # a PeftModel, or the bare model with only its head trainable (lora=False)
    tokenizer: Any
    losses: list[float]
    seconds: float


def with_lora(model: Any, config: EncoderConfig, *, classifier: bool) -> Any:
    """`model` wrapped for LoRA training; a classifier's head trains in full and is saved in the adapter."""
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS if classifier else TaskType.FEATURE_EXTRACTION,
        r=config.r,
        lora_alpha=config.alpha,  # type: ignore[arg-type]  # PEFT types it int; it scales by any number
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        modules_to_save=["classifier"] if classifier else None,
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:  # PEFT: no module of the model matches target_modules
        linear = sorted(
            {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        )
        raise ConfigError(
            f"encoder.target_modules {config.target_modules} fit no layer of this encoder ({exc}).",
            fix=f"Name some of its linear layers, e.g. {', '.join(linear[:8])}.",
        ) from None


def head_only(model: Any) -> Any:
    """The base encoder frozen, only the classification head trainable: the base that an adapter must beat."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("classifier.")
    return model


def classification_loss(model: Any, tokenizer: Any, rows: Sequence[LabeledText], max_length: int) -> torch.Tensor:
    label2id = model.config.label2id
    batch = tokenize(tokenizer, rows, max_length)
    targets = torch.tensor([label2id[row.label] for row in rows])
    return model(**batch, labels=targets).loss


def contrastive_loss(model: Any, tokenizer: Any, rows: Sequence[Pair], config: EncoderConfig) -> torch.Tensor:
    queries = encode(model, tokenizer, [row.query for row in rows], config.max_length)
    texts = [row.positive for row in rows] + [row.negative for row in rows if row.negative is not None]
    candidates = encode(model, tokenizer, texts, config.max_length)
    scores = queries @ candidates.T / config.temperature
    return torch.nn.functional.cross_entropy(scores, torch.arange(len(rows)))


def fit(model: Any, rows: Sequence[Any], loss: Callable, config: EncoderConfig, on_step: OnStep | None) -> list[float]:
    """AdamW with a linear warm-up (a tenth of the steps) and a linear decay; the loss of every step."""
    torch.manual_seed(config.seed)
    order = random.Random(config.seed)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate)
    per_epoch = math.ceil(len(rows) / config.batch_size)
    total = per_epoch * config.epochs
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    model.train()
    losses: list[float] = []
    for _ in range(config.epochs):
        shuffled = list(rows)
        order.shuffle(shuffled)
        for start in range(0, len(shuffled), config.batch_size):
            value = loss(model, shuffled[start : start + config.batch_size])
            value.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(value.detach()))
            if on_step is not None:
                on_step(len(losses), total, losses[-1])
    model.eval()
    return losses


def train_classifier(
    rows: list[LabeledText],
    model_dir: Any,
    config: EncoderConfig,
    *,
    labels: list[str] | None = None,
    lora: bool = True,
    on_step: OnStep | None = None,
) -> Trained:
    """A LoRA classifier (or, with lora=False, the head alone on the frozen base) trained on `rows`."""
    started = time.monotonic()
    torch.manual_seed(config.seed)  # the head's initialisation
    tokenizer = load_tokenizer(model_dir)
    model = load_classifier(model_dir, labels or sorted({row.label for row in rows}))
    model = with_lora(model, config, classifier=True) if lora else head_only(model)
    losses = fit(
        model, rows, lambda m, batch: classification_loss(m, tokenizer, batch, config.max_length), config, on_step
    )
    return Trained(model, tokenizer, losses, time.monotonic() - started)


def train_embedder(rows: list[Pair], model_dir: Any, config: EncoderConfig, on_step: OnStep | None = None) -> Trained:
    started = time.monotonic()
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(model_dir)
    model = with_lora(load_embedder(model_dir), config, classifier=False)
    losses = fit(model, rows, lambda m, batch: contrastive_loss(m, tokenizer, batch, config), config, on_step)
    return Trained(model, tokenizer, losses, time.monotonic() - started)
