"""Checks that a synthetic example is usable before it reaches training (pure functions)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def _number_forms(value: int | float) -> list[str]:
    forms = {str(value)}
    if isinstance(value, float) and value.is_integer():
        forms.add(str(int(value)))
    if isinstance(value, int) and abs(value) >= 1000:
        forms.add(f"{value:,}")
    return sorted(forms)


def _date_forms(value: str) -> list[str]:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return [value]
    month = _MONTHS[day.month - 1]
    return [
        value,
        f"{month} {day.day}",
        f"{day.day} {month}",
        f"{month} {day.day}th",
        f"{month} {day.day}st",
        f"{month} {day.day}nd",
        f"{month} {day.day}rd",
    ]


def value_grounded(value: Any, text: str) -> bool:
    """Is the value stated in the text, literally or in an accepted paraphrase (dates, thousands)?"""
    lowered = _norm(text)
    if isinstance(value, bool):
        return True  # booleans are implied by wording, not quoted
    if isinstance(value, (int, float)):
        return any(re.search(rf"(?<![\d.]){re.escape(form)}(?![\d]|\.\d)", lowered) for form in _number_forms(value))
    if isinstance(value, str):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return any(form in lowered for form in _date_forms(value))
        return _norm(value) in lowered
    if isinstance(value, list):
        return all(value_grounded(item, text) for item in value)
    if isinstance(value, dict):
        return all(value_grounded(item, text) for item in value.values())
    return value is None


def ungrounded_arguments(arguments: dict[str, Any], text: str) -> list[str]:
    """Names of the arguments whose values the request does not state."""
    return [key for key, value in arguments.items() if not value_grounded(value, text)]


def clean_line(text: str) -> str:
    """The first line of a completion, without list markers or quotes."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.strip().strip('"').strip()


def request_problem(text: str) -> str | None:
    """A reason to reject a generated request on its form alone, or None."""
    if len(text) < 8:
        return "too_short"
    if len(text) > 300:
        return "too_long"
    if "=" in text or "{" in text:
        return "leaked_markup"
    return None
