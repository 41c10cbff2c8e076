"""How people say a value, and where a request says it (pure functions).

A call carries exact values (`2026-03-14`, `18:00`, `gluten_free`, `C`, `18.5`); a person writes
"March 14th", "6pm", "gluten-free", "Celsius", "$18.50". `spoken_forms` lists the ways a value may be
written, and `find_value` finds one of them in a request, as a character span, so that grounding accepts
paraphrases and the matched-call check can see what part of a request the call accounts for.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

# Verbs of tool names that say nothing a person would ('get_current_weather' is about current weather).
GENERIC_NAME_VERBS = frozenset(
    {"get", "fetch", "retrieve", "query", "lookup", "list", "do", "perform", "execute", "run", "api"}
)

MONTHS = [
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
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

# Common enumeration values and how people say them. Keys are normalised (lower case, spaces for _ and -).
_ENUM_WORDS: dict[str, list[str]] = {
    "c": ["celsius", "°c", "degrees celsius", "centigrade"],
    "f": ["fahrenheit", "°f", "degrees fahrenheit"],
    "k": ["kelvin"],
    "celsius": ["°c", "centigrade"],
    "fahrenheit": ["°f"],
    "metric": ["metric units", "in metric"],
    "imperial": ["imperial units", "in imperial"],
    "km": ["kilometers", "kilometres", "km"],
    "mi": ["miles"],
    "kg": ["kilograms", "kilos"],
    "lb": ["pounds", "lbs"],
    "lbs": ["pounds"],
    "usd": ["dollars", "us dollars", "bucks"],
    "eur": ["euros", "euro"],
    "gbp": ["pounds", "british pounds", "quid"],
    "jpy": ["yen", "japanese yen"],
    "cad": ["canadian dollars"],
    "aud": ["australian dollars"],
    "chf": ["swiss francs", "francs"],
    "cny": ["yuan", "renminbi"],
    "inr": ["rupees", "indian rupees"],
    "mxn": ["pesos", "mexican pesos"],
    "driving": ["drive", "by car", "car"],
    "walking": ["walk", "on foot", "walk there"],
    "bicycling": ["bike", "by bike", "biking", "bicycle", "cycling", "cycle"],
    "cycling": ["bike", "by bike", "bicycle"],
    "transit": ["public transport", "public transit", "by bus", "by train", "by tube", "subway", "metro"],
    "asc": ["ascending", "lowest first", "oldest first"],
    "desc": ["descending", "highest first", "newest first"],
    "low": ["low", "lowest"],
    "medium": ["medium", "normal"],
    "high": ["high", "highest", "urgent"],
    "cheap": ["inexpensive", "budget", "affordable", "cheap"],
    "moderate": ["mid-range", "mid range", "moderately priced", "reasonably priced"],
    "expensive": ["upscale", "high-end", "fancy", "pricey"],
    "overnight": ["next day", "next-day", "overnight"],
    "express": ["express", "expedited", "rush"],
    "standard": ["standard", "regular", "normal"],
    "economy": ["economy", "coach"],
    "premium economy": ["premium economy"],
    "business": ["business class", "business"],
    "first": ["first class"],
    "male": ["man", "male"],
    "female": ["woman", "female"],
    "on": ["on", "turn on", "switch on"],
    "off": ["off", "turn off", "switch off"],
    "am": ["morning", "a.m."],
    "pm": ["afternoon", "evening", "p.m."],
    "mon": ["monday", "mondays"],
    "tue": ["tuesday", "tuesdays"],
    "wed": ["wednesday", "wednesdays"],
    "thu": ["thursday", "thursdays"],
    "fri": ["friday", "fridays"],
    "sat": ["saturday", "saturdays"],
    "sun": ["sunday", "sundays"],
}
for _day in WEEKDAYS:
    _ENUM_WORDS.setdefault(_day, [_day, _day + "s"])

_NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]
_TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 100: "a hundred"}

# A quoted span of two or more characters, in double or single quotes (an apostrophe inside a word is none).
QUOTED = re.compile(r'"([^"]{2,})"|(?<!\w)\'([^\']{2,})\'(?!\w)')


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower().replace("_", " ")).strip()


def split_name(name: str) -> list[str]:
    """`max_minutes` -> [max, minutes]; `FindMovies` -> [find, movies]; `Movies_3_x` drops the digit."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return [w for w in re.split(r"[\s_.\-]+", spaced.lower()) if w and not w.isdigit()]


def is_code(value: Any) -> bool:
    """Short or upper-case enumeration values (C, USD, mon) that people say in words instead."""
    raw = str(value)
    return len(raw) <= 3 or (raw.isupper() and len(raw) <= 5)


def enum_phrases(value: Any, description: str = "") -> list[str]:
    """Ways to say an enumeration value, the most natural first: `gluten_free` -> gluten free,
    gluten-free; `C` -> celsius, degrees celsius, ..., C. The raw value is always last."""
    raw = str(value)
    plain = normalise(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", raw).replace("-", " "))
    forms = [] if is_code(raw) else [plain]
    if "-" in raw or "_" in raw:
        forms.append(raw.lower().replace("_", "-"))
    # A description that spells the codes out: "C for Celsius, F for Fahrenheit", "1 = low".
    pattern = rf"\b{re.escape(raw)}\s*(?:for|=|means|:)\s*([A-Za-z][\w -]{{1,20}}?)(?=[,;.)]|$| or | and )"
    forms += [normalise(match.group(1)) for match in re.finditer(pattern, description)]
    forms += _ENUM_WORDS.get(plain, [])
    if is_code(raw) and not forms:
        forms.append(plain)
    seen: list[str] = []
    for form in forms + [raw]:
        if form and form not in seen:
            seen.append(form)
    return seen


def date_forms(value: str) -> list[str]:
    """`2026-03-14` -> March 14, march 14th, 14 March, Mar 14, 3/14, the 14th of March, 2026-03-14."""
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return [value]
    month = MONTHS[day.month - 1]
    suffix = "th" if 11 <= day.day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day.day % 10, "th")
    return [
        f"{month} {day.day}",
        f"{month} {day.day}{suffix}",
        f"{day.day} {month}",
        f"{day.day}{suffix} {month}",
        f"the {day.day}{suffix} of {month}",
        f"{month[:3]} {day.day}",
        f"{month[:3]} {day.day}{suffix}",
        f"{day.day} {month[:3]}",
        f"{month} {day.day}, {day.year}",
        f"{day.month}/{day.day}",
        value,
    ]


def time_forms(value: str) -> list[str]:
    """`18:00` -> 6pm, 6 pm, 6:00 pm, 18:00; `07:30` -> 7:30am, 7:30 am, 7:30, 07:30."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})(?::\d{2})?", value.strip())
    if not match:
        return [value]
    hour, minute = int(match.group(1)), int(match.group(2))
    twelve = hour % 12 or 12
    half = "am" if hour < 12 else "pm"
    clock = f"{twelve}:{minute:02d}"
    forms = []
    if minute == 0:
        forms += [f"{twelve}{half}", f"{twelve} {half}"] + ([f"{twelve} o'clock"] if hour < 12 else [])
        if hour == 12:
            forms.append("noon")
    forms += [f"{clock}{half}", f"{clock} {half}", f"{clock} {half[0]}.m.", f"{hour:02d}:{minute:02d}"]
    if hour >= 13:
        forms.append(f"{hour}:{minute:02d}")
    elif hour >= 1:
        forms.append(f"{hour}:{minute:02d}")
    return forms


def number_forms(value: int | float) -> list[str]:
    """18.5 -> 18.5, 18.50; 1250 -> 1250, 1,250; 3 -> 3, three."""
    forms: list[str] = []
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        forms.append(str(value))
        if abs(value) >= 1000:
            forms.append(f"{value:,}")
        if 0 <= value < len(_NUMBER_WORDS):
            forms.append(_NUMBER_WORDS[value])
        elif value in _TENS:
            forms.append(_TENS[value])
    else:
        forms.append(repr(value))
        if round(value, 2) == value:
            forms.append(f"{value:.2f}")
    return list(dict.fromkeys(forms))


# ---- finding a value in a request ------------------------------------------------------------------


def _form_pattern(form: str) -> str:
    """A regex for a surface form: whole words, case-insensitive, flexible spaces."""
    escaped = r"\s+".join(re.escape(part) for part in form.split())
    left = r"(?<![\w])" if form[:1].isalnum() else ""
    right = r"(?![\w])" if form[-1:].isalnum() else ""
    return left + escaped + right


def find_form(forms: list[str], text: str) -> tuple[int, int] | None:
    """The span of the earliest, then longest, of `forms` in `text` (case-insensitive)."""
    best: tuple[int, int] | None = None
    for form in forms:
        if not form:
            continue
        match = re.search(_form_pattern(form.lower()), text.lower())
        if match and (best is None or (match.start(), -match.end()) < (best[0], -best[1])):
            best = (match.start(), match.end())
    return best


def find_time(value: str, text: str) -> tuple[int, int] | None:
    """Where `text` states the time of day `value` (HH:MM): "6pm", "18:00", "6:00 p.m.", "noon"; a clock
    followed by the other half of the day ("11:30 p.m." for 11:30) does not count."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})(?::\d{2})?", value.strip())
    if not match:
        return find_form([value], text)
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour == 12 and minute == 0:
        found = find_form(["noon", "midday"], text)
        if found:
            return found
    pattern = r"(?<![\d:])(\d{1,2})(?::(\d{2}))?\s*(a\.?\s?m\.?|p\.?\s?m\.?|o'clock)?(?![\d:]|\w)"
    for m in re.finditer(pattern, text.lower()):
        h, mm, half = int(m.group(1)), int(m.group(2) or 0), (m.group(3) or "").replace(".", "").replace(" ", "")
        if mm != minute or h > 23:
            continue
        if half in ("am", "pm"):
            h24 = h % 12 + (12 if half == "pm" else 0)
        elif m.group(2) is None and half != "o'clock":
            continue  # a bare number is not a time
        else:
            h24 = h  # 24-hour clock, or o'clock in the morning
        if h24 == hour:
            return m.start(), m.end()
    return None


def find_all(forms: list[str], text: str) -> list[tuple[int, int]]:
    """Every span of `text` where one of `forms` is written (for masking repeated mentions)."""
    spans = []
    for form in forms:
        if form:
            spans += [(m.start(), m.end()) for m in re.finditer(_form_pattern(form.lower()), text.lower())]
    return spans


def _number_spans(value: int | float, text: str) -> tuple[int, int] | None:
    for form in number_forms(value):
        pattern = rf"(?<![\d.,]){re.escape(form)}(?![\d]|[.,]\d)" if form[0].isdigit() else _form_pattern(form)
        match = re.search(pattern, text.lower())
        if match:
            return match.start(), match.end()
    return None


def value_forms(value: Any, description: str = "", is_enum: bool = False) -> list[str]:
    """Every accepted surface form of a scalar value."""
    if is_enum:
        return enum_phrases(value, description)
    if isinstance(value, str):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return date_forms(value)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?", value):
            return date_forms(value[:10])
        if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", value):
            return time_forms(value)
        return [value]
    return []


def find_value(value: Any, text: str, *, description: str = "", is_enum: bool = False) -> list[tuple[int, int]]:
    """Spans of `text` that state `value` (every item of a list, every field of an object); [] if any
    part is not stated. A datetime needs both its date and its time."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        span = _number_spans(value, text)
        return [span] if span else []
    if isinstance(value, list):
        spans = []
        for item in value:
            found = find_value(item, text, description=description, is_enum=is_enum)
            if not found:
                return []
            spans += found
        return spans
    if isinstance(value, dict):
        spans = []
        for item in value.values():
            found = find_value(item, text)
            if not found:
                return []
            spans += found
        return spans
    value = str(value)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?", value):
        date_span = find_form(date_forms(value[:10]), text)
        time_span = find_form(time_forms(value[11:16]), text)
        return [date_span, time_span] if date_span and time_span else []
    span = find_form(value_forms(value, description, is_enum), text)
    return [span] if span else []


def stated(value: Any, text: str, *, description: str = "", is_enum: bool = False) -> bool:
    """Is the value stated in the text, literally or in an accepted paraphrase? Booleans are implied."""
    if isinstance(value, bool):
        return True
    if isinstance(value, list) and not value:
        return True
    return bool(find_value(value, text, description=description, is_enum=is_enum))
