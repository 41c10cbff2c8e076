"""Scoring encoders: accuracy and macro-F1 for a classifier, recall@k for an embedding model.

The metric functions are pure; `predict` and `retrieval_scores` run the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from loraforge.encoders.data import LabeledText, Pair, tokenize
from loraforge.encoders.embed import embed


def accuracy(gold: Sequence[str], predicted: Sequence[str]) -> float:
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold) if gold else 0.0


def macro_f1(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> float:
    """The unweighted mean over `labels` of each label's F1 (0 for a label never predicted nor present)."""
    scores = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def recall_at_k(rankings: Sequence[Sequence[int]], relevant: Sequence[int], k: int) -> float:
    """The share of queries whose relevant document is among their first k ranked documents."""
    return sum(rel in ranked[:k] for ranked, rel in zip(rankings, relevant, strict=True)) / len(relevant)


@torch.no_grad()
def probabilities(
    model: Any, tokenizer: Any, rows: Sequence[LabeledText], max_length: int = 256
) -> tuple[list[str], list[list[float]]]:
    """The classifier's label for each row and its probability per label (in id order), in batches of 32."""
    model.eval()
    id2label = model.config.id2label
    answers: list[str] = []
    scores: list[list[float]] = []
    for start in range(0, len(rows), 32):
        logits = model(**tokenize(tokenizer, rows[start : start + 32], max_length)).logits
        answers += [id2label[int(i)] for i in logits.argmax(dim=-1)]
        scores += logits.softmax(dim=-1).tolist()
    return answers, scores


def predict(model: Any, tokenizer: Any, rows: Sequence[LabeledText], max_length: int = 256) -> list[str]:
    return probabilities(model, tokenizer, rows, max_length)[0]


def classifier_scores(model: Any, tokenizer: Any, rows: Sequence[LabeledText], max_length: int) -> dict[str, Any]:
    predicted = predict(model, tokenizer, rows, max_length)
    gold = [row.label for row in rows]
    labels = sorted(set(model.config.label2id))
    return {
        "accuracy": accuracy(gold, predicted),
        "macro_f1": macro_f1(gold, predicted, labels),
        "rows": len(rows),
        "predicted": predicted,
    }


def corpus_of(rows: Sequence[Pair]) -> tuple[list[str], list[int]]:
    """The documents to search (every distinct positive and negative), and each row's positive's index."""
    documents: list[str] = []
    index: dict[str, int] = {}
    for row in rows:
        for text in (row.positive, row.negative):
            if text is not None and text not in index:
                index[text] = len(documents)
                documents.append(text)
    return documents, [index[row.positive] for row in rows]


def retrieval_scores(
    model: Any, tokenizer: Any, queries: Sequence[Pair], documents: list[str], max_length: int, ks=(1, 5, 10)
) -> dict[str, Any]:
    """recall@k of `queries` over `documents` (which must hold each query's positive)."""
    index = {text: i for i, text in enumerate(documents)}
    relevant = [index[row.positive] for row in queries]
    scores = (
        embed(model, tokenizer, [row.query for row in queries], max_length)
        @ embed(model, tokenizer, documents, max_length).T
    )
    rankings = scores.argsort(dim=-1, descending=True).tolist()
    result: dict[str, Any] = {f"recall@{k}": recall_at_k(rankings, relevant, k) for k in ks}
    result.update(queries=len(queries), documents=len(documents))
    return result
