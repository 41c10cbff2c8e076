"""Sentence embeddings from an encoder, as sentence-transformers makes them for MiniLM: the mean of the
token states under the attention mask, scaled to unit length."""

from __future__ import annotations

from typing import Any

import torch


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def encode(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> torch.Tensor:
    """Unit-length embeddings of `texts`, with gradients when the model is training."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)


@torch.no_grad()
def embed(model: Any, tokenizer: Any, texts: list[str], max_length: int = 256, batch_size: int = 32) -> torch.Tensor:
    """Embeddings of many texts, in batches, without gradients."""
    model.eval()
    parts = [encode(model, tokenizer, texts[i : i + batch_size], max_length) for i in range(0, len(texts), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0)
