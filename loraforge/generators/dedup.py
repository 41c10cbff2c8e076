"""Near-duplicate filtering by ROUGE-L, as Self-Instruct does: a text too close to a kept one is dropped."""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(a: str | list[str], b: str | list[str]) -> float:
    """ROUGE-L F1 between two texts, on lower-cased words."""
    ta = words(a) if isinstance(a, str) else a
    tb = words(b) if isinstance(b, str) else b
    if not ta or not tb:
        return 0.0
    lcs = lcs_length(ta, tb)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(ta), lcs / len(tb)
    return 2 * precision * recall / (precision + recall)


class NearDuplicateIndex:
    """Keeps accepted texts; `add` refuses one whose ROUGE-L with any kept text exceeds `threshold`."""

    def __init__(self, threshold: float = 0.7) -> None:
        self.threshold = threshold
        self._kept: list[list[str]] = []
        self._vocab: list[Counter] = []

    def __len__(self) -> int:
        return len(self._kept)

    def closest(self, text: str) -> float:
        tokens = words(text)
        counts = Counter(tokens)
        best = 0.0
        for kept, vocab in zip(self._kept, self._vocab):
            # F1 = 2 LCS / (len a + len b), and LCS <= shared words: skip pairs that cannot beat the best.
            shared = sum((counts & vocab).values())
            if shared == 0 or 2 * shared / (len(tokens) + len(kept)) <= best:
                continue
            best = max(best, rouge_l(tokens, kept))
        return best

    def is_duplicate(self, text: str) -> bool:
        return self.closest(text) > self.threshold

    def add(self, text: str, *, force: bool = False) -> bool:
        """Keep `text` unless it is a near-duplicate; `force` keeps it regardless (seeds, resumed rows)."""
        if not force and self.is_duplicate(text):
            return False
        tokens = words(text)
        self._kept.append(tokens)
        self._vocab.append(Counter(tokens))
        return True
