"""Checks that a request reads like a person and matches its call, and the realism figures of a data set.

Request checks: a request must not copy the tool's or a parameter's description, nor print a parameter
name as a label ("volume 80", "title: Dentist"). The matched-call check is stronger than grounding: every
value of the call is stated in the request, and nothing the request states that a parameter could hold is
missing from the call (a number, a name, an e-mail address, an enumeration's word). All pure functions.
"""

from __future__ import annotations

import random
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loraforge.generators import values
from loraforge.generators.bank import role_prefix
from loraforge.generators.phrasing import (
    GENERIC_NAME_VERBS,
    MONTHS,
    QUOTED,
    WEEKDAYS,
    enum_phrases,
    find_all,
    find_form,
    number_forms,
    split_name,
)
from loraforge.tools.definition import ToolDefinition

_WORD = re.compile(r"[a-z0-9']+")
COPY_WORDS = 6  # this many consecutive description words inside a request is a copy


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def copied_description(request: str, tool: ToolDefinition, n: int = COPY_WORDS) -> str | None:
    """The run of `n` words that the request shares with the tool's or a parameter's description."""
    texts = [tool.description] + [str(s.get("description", "")) for s in _leaf_schemas(tool.parameters)]
    request_text = " " + " ".join(_words(request)) + " "
    for text in texts:
        words = _words(text)
        for i in range(len(words) - n + 1):
            gram = " ".join(words[i : i + n])
            if f" {gram} " in request_text:
                return gram
    return None


# Words of tool names that say nothing about what a request is for.
_NAME_STOPWORDS = GENERIC_NAME_VERBS | {
    "set", "send", "create", "make", "find", "search", "add", "update", "delete", "remove", "check", "book",
    "current", "new", "info", "data", "item", "items",
}  # fmt: skip


def mentions_tool(request: str, tool: ToolDefinition) -> str | None:
    """The word of the tool's name ('weather', 'recipes', 'thermostat') that a request uses, singular or
    plural; a request meant to need no tool must not ask about what a tool does."""
    said = set(_words(request))
    for word in split_name(tool.name):
        word = word.lower()
        if len(word) < 4 or word in _NAME_STOPWORDS:
            continue
        forms = {word, word + "s", word + "es", word[:-1] if word.endswith("s") else word}
        if said & forms:
            return word
    return None


def _leaf_schemas(schema: Any, depth: int = 0) -> list[dict[str, Any]]:
    if not isinstance(schema, dict) or depth > 6:
        return []
    out = []
    for sub in (schema.get("properties") or {}).values():
        if isinstance(sub, dict):
            out.append(sub)
            out += _leaf_schemas(sub, depth + 1)
            out += _leaf_schemas(sub.get("items"), depth + 1)
    return out


def _leaves(arguments: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in arguments.items():
        if isinstance(value, dict):
            out += _leaves(value, key)
        elif isinstance(value, list):
            out += [(key, item) for item in value if not isinstance(item, (dict, list))]
        else:
            out.append((key, value))
    return out


def name_leak(request: str, arguments: dict[str, Any]) -> str | None:
    """A parameter name printed as a label before its value ("volume 80", "unit: celsius"), or None."""
    low = request.lower()
    for key, value in _leaves(arguments):
        label = " ".join(split_name(key))
        if len(label) <= 2 or isinstance(value, bool):
            continue
        forms = {str(value).lower()}
        if isinstance(value, str):
            forms |= {f.lower() for f in enum_phrases(value)}
        for form in forms:
            if form and re.search(rf"\b{re.escape(label)}\s*[:=]?\s*{re.escape(form)}", low):
                return f"{label} {form}"
    return None


# ---- the matched-call check -------------------------------------------------------------------------

_STOP_CAPITALS = {
    "i",
    "i'm",
    "i'd",
    "i'll",
    "i've",
    "ok",
    "okay",
    "hi",
    "hey",
    "hello",
    "please",
    "thanks",
    "thank",
    "also",
    "then",
    "next",
    "plus",
    "and",
    "after",
    "first",
    "once",
    "two",
    "could",
    "can",
    "quick",
    "cheers",
    "sms",
    "asap",
    "pls",
    "am",
    "pm",
    "us",
    "uk",
    "tv",
}


@dataclass(frozen=True)
class CallInRequest:
    """One call of an example, with the value model of its tool's parameters."""

    tool: ToolDefinition
    models: dict[str, values.ParamModel]
    arguments: dict[str, Any]


def value_spans(call: CallInRequest, request: str) -> tuple[list[tuple[int, int]], list[str]]:
    """Spans of the request that state the call's values, and the names of arguments it does not state."""
    spans: list[tuple[int, int]] = []
    missing: list[str] = []
    for name, value in call.arguments.items():
        model = call.models.get(name) or values.model_param(name, call.tool.properties.get(name, {}), call.tool)
        if isinstance(value, bool) or (isinstance(value, list) and not value):
            continue
        found = values.find(model, value, request)
        if not found:
            missing.append(name)
        spans += found
    return spans, missing


_NEGATIONS = re.compile(r"\b(?:no|not|non|without|never|don'?t|dont|isn'?t|except)\W+(?:\w+\W+)?$", re.IGNORECASE)


def negated_value(request: str, call: CallInRequest) -> str | None:
    """A value the request states only after a negation ("no fahrenheit", "not in celsius"): the call says
    the opposite of what was asked. Booleans are left alone: "no tolls" is how a false one is said."""
    spans, _ = value_spans(call, request)
    for start, end in spans:
        if _NEGATIONS.search(request[max(0, start - 24) : start]):
            return request[max(0, start - 12) : end]
    return None


def copied_values(request: str, shown: Sequence[str], call: CallInRequest) -> list[str]:
    """Values from the prompt's shots that the request repeats outside the call's own values: a small
    teacher copies them, and the call then misses what the request says."""
    rest = _mask(request, value_spans(call, request)[0]).lower()
    return [text for text in shown if len(text) > 2 and re.search(rf"(?<!\w){re.escape(text.lower())}(?!\w)", rest)]


def _repeats(call: CallInRequest, request: str) -> list[tuple[int, int]]:
    """Every other place where a call's scalar values are written again ("3 day forecast ... 3-day")."""
    spans = []
    for _, value in _leaves(call.arguments):
        if isinstance(value, bool):
            continue
        forms = number_forms(value) if isinstance(value, (int, float)) else [str(value)]
        spans += find_all(forms, request)
    return spans


def enum_choice_stated(request: str, model: values.ParamModel) -> Any:
    """The one choice of an enumeration that the request states, or None (none, or several)."""
    if not model.is_enum:
        return None
    stated = [c for c in model.schema["enum"] if find_form(_enum_forms(model, c), request)]
    return stated[0] if len(stated) == 1 else None


def _enum_forms(model: values.ParamModel, choice: Any) -> list[str]:
    return [p for p in values.forms(model, choice) if len(p) >= 2 and p.lower() not in _COMMON]


def _tool_words(tool: ToolDefinition) -> set[str]:
    """The words of a tool's name and description: a request may say them without stating a value."""
    return set(_words(f"{tool.name} {' '.join(split_name(tool.name))} {tool.description}"))


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        for i in range(start, min(end, len(chars))):
            chars[i] = " "
    return "".join(chars)


def unmatched_mentions(request: str, calls: list[CallInRequest]) -> list[str]:
    """What the request states that no call argument accounts for: numbers, e-mail addresses, phone
    numbers, capitalised names, and words of a called tool's enumerations."""
    spans: list[tuple[int, int]] = []
    for call in calls:
        spans += value_spans(call, request)[0]
        spans += _repeats(call, request)
    rest = _mask(request, spans)
    found: list[str] = []
    found += re.findall(r"[^@\s]+@[^@\s]+\.\w+", rest)
    rest = re.sub(r"[^@\s]+@[^@\s]+\.\w+", " ", rest)
    found += re.findall(r"https?://\S+", rest)
    found += [a or b for a, b in QUOTED.findall(rest) if (a or b).strip()]
    found += [m for m in re.findall(r"(?<![\w.])\d[\d,.:]*(?:\s*(?:am|pm))?", rest.lower()) if m.strip(".,:")]
    known = set().union(*(_tool_words(call.tool) for call in calls))
    sentence_start = True
    for match in re.finditer(r"\S+", rest):
        token = match.group()
        word = token.strip(".,!?;:\"'()").lower()
        if token[:1].isupper() and not sentence_start and word and word not in _STOP_CAPITALS:
            if word not in known and word not in MONTHS and word not in WEEKDAYS:
                found.append(token.strip(".,!?;:\"'()"))
        sentence_start = token[-1:] in ".!?:"
    for call in calls:
        for model in call.models.values():
            span = find_form(_enum_words(model), rest)
            if span:
                found.append(rest[span[0] : span[1]])
    found += extra_list_items(request, calls)
    found += absent_parameters_named(request, calls)
    return found


def absent_parameters_named(request: str, calls: list[CallInRequest]) -> list[str]:
    """Names of optional parameters that the request says ("memo October", "for the room") while no call
    carries them: the request states a value that the call has lost."""
    low = request.lower()
    found = []
    for call in calls:
        own = set(split_name(call.tool.name))
        for name in call.tool.properties:
            label = " ".join(split_name(name))
            if name in call.arguments or len(label) <= 3 or set(label.split()) <= own:
                continue
            if re.search(rf"(?<!\w){re.escape(label)}s?(?!\w)", low):
                found.append(label)
    return found


def partly_stated(request: str, call: CallInRequest, name: str) -> str | None:
    """A word of argument `name` that the request states while the whole value is not stated ("78
    fahrenheit upstairs" for the room "upstairs hallway"). Dropping the argument would then train a call that
    ignores what the user said; the other arguments' own words, and the tool's name and description, are
    not counted."""
    others = CallInRequest(call.tool, call.models, {k: v for k, v in call.arguments.items() if k != name})
    rest = _mask(request, value_spans(others, request)[0]).lower()
    own = _tool_words(call.tool)
    for _, leaf in _leaves({name: call.arguments[name]}):
        if not isinstance(leaf, str):
            continue
        for word in re.findall(r"[a-z]{4,}", leaf.lower()):
            if word in own or word in _COMMON or word in _STOP_CAPITALS:
                continue
            if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", rest):
                return word
    return None


_COMMON = {"on", "off", "normal", "regular", "standard", "first", "low", "high", "medium", "sun", "sat", "wed"}


def _enum_words(model: values.ParamModel) -> list[str]:
    """Every way to say any choice of an enumeration (the short, common words aside)."""
    target = model.items if model.items is not None else model
    if not target.schema.get("enum"):
        return []
    words: list[str] = []
    for choice in target.schema["enum"]:
        words += _enum_forms(target, choice)
    return words


def extra_list_items(request: str, calls: list[CallInRequest]) -> list[str]:
    """Items a request lists beside a list argument's own ("tofu" in "tomatoes, tofu and soy sauce"): the
    text between the argument's items must be separators only, and nothing may be listed next to them."""
    extra: list[str] = []
    for call in calls:
        for name, value in call.arguments.items():
            model = call.models.get(name)
            if not isinstance(value, list) or not value or model is None or model.items is None:
                continue
            spans = sorted(
                span
                for item in value
                for span in find_all(
                    values.forms(model.items, item) if not isinstance(item, (int, float)) else [], request
                )
            )
            if not spans:
                continue
            for (_, end), (start, _) in zip(spans, spans[1:]):
                between = request[end:start].strip(" ,").lower()
                if between not in ("", "and", "&", "or", "and then"):
                    extra.append(between)
            after = request[spans[-1][1] :]
            before = request[: spans[0][0]]
            match = re.match(r"\s*(?:,\s*(?:and\s+)?|\s+and\s+|\s*&\s*)([a-z][\w'-]*)", after, re.IGNORECASE)
            if match and match.group(1).lower() not in _JOIN_WORDS:
                extra.append(match.group(1))
            match = re.search(r"([a-z][\w'-]*)\s*(?:,|\band\b)\s*$", before, re.IGNORECASE)
            if match and match.group(1).lower() not in _JOIN_WORDS:
                extra.append(match.group(1))
    return extra


_JOIN_WORDS = {"with", "using", "the", "a", "an", "some", "also", "then", "please", "thanks", "add", "and", "or"}


def order_problem(request: str, call: CallInRequest) -> str | None:
    """Two values of one kind (origin and destination, two currencies) must be told apart: by role words
    before them ("from X to Y", "X into Y"), or else by being stated in the schema's order."""
    by_kind: dict[str, list[str]] = {}
    for name in call.arguments:
        model = call.models.get(name)
        if model is None or isinstance(call.arguments[name], (bool, list, dict)):
            continue
        key = "enum:" + ",".join(map(str, model.schema["enum"])) if model.is_enum else model.kind
        by_kind.setdefault(key, []).append(name)
    low = request.lower()
    for names in by_kind.values():
        if len(names) < 2:
            continue
        positions = []
        for name in names:
            found = values.find(call.models[name], call.arguments[name], request)
            positions.append(found[0][0] if found else -1)
        if -1 in positions:
            continue
        if all(_role_stated(low, pos, role_prefix(n)) for n, pos in zip(names, positions)):
            continue
        if positions != sorted(positions):
            return f"{names} are stated in another order and nothing says which is which"
    return None


def _role_stated(text: str, position: int, role: str) -> bool:
    if not role:
        return False
    before = text[max(0, position - 14) : position]
    words = {"from ": ("from",), "to ": ("to", "into", "in", "towards")}[role]
    return any(re.search(rf"\b{w}\s+(\S+\s+)?$", before) for w in words)


# ---- realism figures of a data set ------------------------------------------------------------------


def _user_text(row: dict[str, Any]) -> str:
    return next((m.get("content") or "" for m in row.get("messages", []) if m.get("role") == "user"), "")


def _calls(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        c.get("function", c)
        for m in row.get("messages", [])
        if m.get("role") == "assistant"
        for c in (m.get("tool_calls") or [])
    ]


def summarise(
    rows: list[dict[str, Any]], tools: list[ToolDefinition], *, min_share: float = 0.05, seed: int = 0
) -> dict[str, Any]:
    """Realism of generated tool-calling rows: coverage per tool and style (uncovered and thin tools
    flagged), description copies, name leaks, distinct n-grams, request length spread, and ten random
    examples. `min_share` is the share of calls below which a tool counts as thinly covered."""
    by_name = {t.name: t for t in tools}
    per_tool: Counter = Counter()
    per_tool_style: dict[str, Counter] = {t.name: Counter() for t in tools}
    copies = leaks = 0
    requests = []
    for row in rows:
        text = _user_text(row)
        requests.append(text)
        style = row.get("meta", {}).get("style", "?")
        for call in _calls(row):
            name = call.get("name")
            if name not in by_name:
                continue
            per_tool[name] += 1
            per_tool_style[name][style] += 1
            if copied_description(text, by_name[name]):
                copies += 1
            args = call.get("arguments") or {}
            if isinstance(args, dict) and name_leak(text, args):
                leaks += 1
    total_calls = sum(per_tool.values())
    shares = {t.name: (per_tool[t.name] / total_calls if total_calls else 0.0) for t in tools}
    lengths = [len(_words(t)) for t in requests]
    rng = random.Random(seed)
    sample = rng.sample(rows, k=min(10, len(rows)))
    return {
        "rows": len(rows),
        "calls_per_tool": {t.name: per_tool[t.name] for t in tools},
        "calls_per_tool_and_style": {name: dict(c) for name, c in per_tool_style.items()},
        "share_per_tool": {name: round(v, 4) for name, v in shares.items()},
        "uncovered_tools": [t.name for t in tools if per_tool[t.name] == 0],
        "thin_tools": [t.name for t in tools if 0 < shares[t.name] < min_share],
        "description_copies": copies,
        "description_copy_share": round(copies / total_calls, 4) if total_calls else 0.0,
        "name_leaks": leaks,
        "name_leak_share": round(leaks / total_calls, 4) if total_calls else 0.0,
        "distinct_1": distinct_ngrams(requests, 1),
        "distinct_2": distinct_ngrams(requests, 2),
        "request_words": _spread(lengths),
        "examples": [
            {"request": _user_text(r), "calls": _calls(r), "style": r.get("meta", {}).get("style")} for r in sample
        ],
    }


def distinct_ngrams(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts (Li et al.'s distinct-n): 1.0 means no repeats."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = _words(text)
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def _spread(lengths: list[int]) -> dict[str, float]:
    if not lengths:
        return {}
    ordered = sorted(lengths)
    return {
        "min": ordered[0],
        "p10": ordered[len(ordered) // 10],
        "median": statistics.median(ordered),
        "p90": ordered[(9 * len(ordered)) // 10],
        "max": ordered[-1],
        "stdev": round(statistics.pstdev(ordered), 2),
    }
