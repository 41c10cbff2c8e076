"""Checks that a synthetic example is usable before it reaches training (pure functions)."""

from __future__ import annotations

import re
from typing import Any

from loraforge.generators.phrasing import QUOTED, stated


class Rejected(Exception):
    """A synthetic example failed a check; `reason` is counted in the data report."""

    def __init__(self, reason: str, sample: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sample = sample


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def value_grounded(value: Any, text: str) -> bool:
    """Is the value stated in the text, literally or in an accepted paraphrase (dates, thousands)?"""
    return stated(value, text)


def clean_line(text: str) -> str:
    """The first line of a completion, without the quotes that wrap all of it. A quote that closes a
    quoted value at the end of the line stays: stripping it would leave the value open."""
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(line) >= 2 and line[0] == line[-1] == '"' and '"' not in line[1:-1]:
        return line[1:-1].strip()
    if line.startswith('"') and line.count('"') % 2:
        line = line[1:]
    return line.strip()


def request_problem(text: str) -> str | None:
    """A reason to reject a generated request on its form alone, or None."""
    if len(text) < 8:
        return "too_short"
    if len(text) > 300:
        return "too_long"
    if any(mark in text for mark in "={;|") or re.search(r"\b(details|request)\s*:", text, re.IGNORECASE):
        return "leaked_markup"  # the prompt's own layout, copied
    words = re.findall(r"[\w']+", text.lower())
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    pairs = [pair for pair in zip(words, words[1:]) if any(w[:1].isdigit() for w in pair)]
    if len(grams) != len(set(grams)) or len(pairs) != len(set(pairs)) or _STUTTER.search(text):
        return "repetitive"
    if text.count('"') % 2:
        return "unbalanced_quote"  # a quoted value that never closes: where it ends is a guess
    return None


# The same one to four words twice in a row ("Denver, Denver", "4 people, 4 people"): a teacher's stutter.
_STUTTER = re.compile(r"(?<!\w)(\w[\w.']*(?:\s+\w[\w.']*){0,3})[\s,]+\1(?!\w)", re.IGNORECASE)


def first_sentences(text: str, count: int) -> str:
    """The first `count` sentences of a reply, on one line."""
    flat = " ".join(text.split())
    parts = re.split(r"(?<=[.!?])\s+", flat)
    return " ".join(parts[:count]).strip()


def _numbers(text: str) -> set[float]:
    return {float(n.replace(",", "")) for n in re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?", text)}


def _scalars(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _scalars(v)]
    if isinstance(value, list):
        return [s for v in value for s in _scalars(v)]
    return [value] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else []


def answer_problem(answer: str, request: str, result: Any) -> str | None:
    """Why a final answer is unfaithful to the tool result, or None.

    At least two thirds of the result's top-level facts must be stated, and no number may appear that is
    in neither the result nor the request (a small teacher copies numbers from its examples).
    """
    if len(answer) < 8:
        return "too_short"
    top = [v for k, v in result.items() if k != "status"] if isinstance(result, dict) else [result]
    facts = [v for v in top if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    stated = sum(value_grounded(v, answer) for v in facts)
    if facts and 3 * stated < 2 * len(facts):
        return "missing_fact"
    allowed = _numbers(request) | {float(v) for v in _scalars(result) if isinstance(v, (int, float))}
    allowed |= {n for v in _scalars(result) if isinstance(v, str) for n in _numbers(v)}
    if _numbers(answer) - allowed:
        return "invented_number"
    return None


_WORD_SPAN = re.compile(r"[\w'-]+", re.UNICODE)


def ground_free_text(value: str, text: str, max_gap: int = 1) -> str | None:
    """The span of `text` that states `value`, allowing a filler word between its words ("start a new job"
    for "start new job"); None when the text does not state it. Loose grounding is repaired by copying the
    span, so that the call's argument is what the user actually wrote."""
    if _norm(value) in _norm(text):
        return value
    want = [w.lower() for w in _WORD_SPAN.findall(value)]
    words = [(m.group().lower(), m.start(), m.end()) for m in _WORD_SPAN.finditer(text)]
    if len(want) < 2:
        return None
    for start in range(len(words)):
        if words[start][0] != want[0]:
            continue
        position, matched = start, 1
        while matched < len(want):
            window = words[position + 1 : position + 2 + max_gap]
            hit = next((i for i, w in enumerate(window) if w[0] == want[matched]), None)
            if hit is None:
                break
            position += hit + 1
            matched += 1
        if matched == len(want):
            return text[words[start][1] : words[position][2]]
    return None


def widen_to_quote(value: str, text: str) -> str:
    """The whole quoted span of `text` that holds `value`, or `value`: a user who quotes a message means
    all of it ('subject "Thanks for yesterday"' is not a subject of "Thanks")."""
    for match in QUOTED.finditer(text):
        inner = (match.group(1) or match.group(2)).strip()
        if _norm(value) in _norm(inner):
            return inner
    return value
