"""Few-shot shots for a tool that has no examples: bank requests about the same thing, with its values.

A tiny teacher writes well when it continues a list of requests for the *same* tool (measured in
`../shared/reference/teacher-facts.md`), and badly from instructions or from shots about other tools. So
for a tool without examples, loraforge takes bank requests on the same topic whose values are of the same
kinds ("what's the forecast for Vienna for the next 4 days" for a forecast tool with a place and a day
count), and swaps in values drawn for this tool's parameters ("... for Osaka for the next 6 days"). The
result reads like a person and states exactly the values it lists: a shot, never training data.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from loraforge.generators import values
from loraforge.generators.bank import BankEntry, load_bank, role_prefix
from loraforge.generators.phrasing import split_name
from loraforge.tools.definition import ToolDefinition

# Kinds that stand in for each other when a bank value is swapped for a tool's.
_GROUPS = [
    {"city", "location", "address", "street", "airport", "country", "state"},
    {"person", "username"},
    {"message", "memo", "free", "title", "task", "query", "label", "tag", "category"},
    {"number", "count", "level", "limit"},
    {"minutes", "hours", "seconds"},
    {"product", "grocery", "dish", "ingredient"},
    {"song", "album", "podcast", "movie", "show", "book"},
    {"artist", "actor", "director", "author"},
]
_STOP = {
    "a",
    "an",
    "the",
    "to",
    "of",
    "for",
    "in",
    "on",
    "at",
    "and",
    "or",
    "by",
    "with",
    "from",
    "is",
    "it",
    "my",
    "me",
    "i",
    "you",
    "get",
    "set",
    "find",
    "search",
    "returns",
    "return",
    "user",
    "user's",
    "optional",
    "optionally",
    "e",
    "g",
    "this",
    "that",
    "as",
    "be",
}


def compatible(bank_kind: str, tool_kind: str) -> bool:
    if bank_kind == tool_kind:
        return True
    return any(bank_kind in group and tool_kind in group for group in _GROUPS)


@dataclass(frozen=True)
class Leaf:
    """A parameter that takes a swapped-in value: top level, an object's field, or an array."""

    path: tuple[str, ...]
    model: values.ParamModel

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(values.kinds_of(self.model))


def leaves(models: dict[str, values.ParamModel]) -> list[Leaf]:
    out = []
    for name, model in models.items():
        if model.kind == "object" and model.fields:
            out += [Leaf((name, key), sub) for key, sub in model.fields.items() if sub.kind != "object"]
        elif model.kind != "boolean":
            out.append(Leaf((name,), model))
    return out


def _content_words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP and len(w) > 2}


def topic_words(tool: ToolDefinition) -> set[str]:
    """What a tool is about: the content words of its name and description (not its parameters', which
    name kinds of values, such as minutes, rather than topics)."""
    return _content_words(f"{' '.join(split_name(tool.name))} {tool.description}")


def _mapping(entry: BankEntry, tool_leaves: list[Leaf]) -> list[tuple[int, Leaf]] | None:
    """Which tool leaf takes each bank detail; None when some detail has no leaf of a fitting kind."""
    free = list(tool_leaves)
    mapping = []
    for index, ((name, _), kinds) in enumerate(zip(entry.details, entry.detail_kinds)):
        head = kinds[-1] if kinds else "free"
        is_list = kinds[:1] == ("array",)
        candidates = [
            leaf for leaf in free if (leaf.kinds[:1] == ("array",)) == is_list and compatible(head, leaf.kinds[-1])
        ]
        if not candidates:
            return None

        def fit(leaf: Leaf, name: str = name, head: str = head) -> tuple[int, int, int]:
            same_role = role_prefix(name) == role_prefix(leaf.path[-1])
            same_words = len(set(split_name(name)) & set(split_name(leaf.path[-1])))
            return (int(same_role), int(leaf.kinds[-1] == head), same_words)

        best = max(candidates, key=fit)
        if role_prefix(name) and role_prefix(name) != role_prefix(best.path[-1]):
            return None  # "from X to Y" cannot be swapped into parameters without those roles
        free.remove(best)
        mapping.append((index, best))
    return mapping


def _swap(text: str, old: str, new: str) -> str | None:
    """`text` with the first `old` replaced by `new`, keeping lower case where the person wrote it so."""
    match = re.search(rf"(?<![\w]){re.escape(old)}(?![\w])", text, re.IGNORECASE)
    if not match:
        return None
    found = match.group()
    if found.islower() and not new.isupper():
        new = new.lower()
    return text[: match.start()] + new + text[match.end() :]


def _said(model: values.ParamModel, value: Any, bank_text: str, rng: random.Random) -> str:
    """The new value as the bank's request says its own: a bare number stays bare ("next 4 days"), and an
    enumeration takes the wording of the same shape ("by train" -> "by bike", "metro" -> "bike")."""
    if isinstance(value, (int, float)) and re.fullmatch(r"[\d.,]+", bank_text.strip()):
        return values.phrasing.number_forms(value)[0]
    if model.is_enum:
        phrases = values.phrasing.enum_phrases(value, model.description)[:-1] or [str(value)]
        old = bank_text.lower().split()
        same_lead = [p for p in phrases if len(old) > 1 and p.split()[0] == old[0]]
        same_length = [p for p in phrases if len(p.split()) == len(old)]
        return rng.choice(same_lead or same_length or phrases)
    return values.spoken(model, value, rng)


def adapt(
    entry: BankEntry,
    tool: ToolDefinition,
    models: dict[str, values.ParamModel],
    source: values.ValueSource,
    rng: random.Random,
) -> tuple[list[str], str] | None:
    """The bank request rewritten with values drawn for `tool`: (details as stated, request), or None."""
    mapping = _mapping(entry, leaves(models))
    if mapping is None:
        return None
    text = entry.request
    details: list[str] = []
    drawn = {leaf.path[0]: source.draw(leaf.model, rng) for _, leaf in mapping if len(leaf.path) == 1}
    values.harmonise(models, drawn, source, rng)
    for index, leaf in mapping:
        name, bank_value = entry.details[index]
        if values.needs_pool(leaf.model) or leaf.kinds[-1] == "free":
            details.append(role_prefix(leaf.path[-1]) + bank_value)  # no library value: keep the person's own
            continue
        if leaf.kinds[:1] == ("array",):
            olds = bank_value.split(", ")
            items = leaf.model.items
            assert items is not None
            picked: list[Any] = []
            for _ in range(8 * len(olds)):
                item = source.draw(items, rng)
                if item not in picked:
                    picked.append(item)
                if len(picked) == len(olds):
                    break
            if len(picked) < len(olds):
                return None
            news = [_said(items, item, old, rng) for item, old in zip(picked, olds)]
            for old, new in zip(olds, news):
                text = _swap(text, old, new) or ""
            said = ", ".join(news[:-1]) + " and " + news[-1] if len(news) > 1 else news[0]
        else:
            value = drawn[leaf.path[0]] if len(leaf.path) == 1 else source.draw(leaf.model, rng)
            new = _said(leaf.model, value, bank_value, rng)
            text = _swap(text, bank_value, new) or ""
            said = new
        if not text:
            return None
        details.append(role_prefix(leaf.path[-1]) + said)
    return details, text


def shots_for_tool(
    tool: ToolDefinition,
    models: dict[str, values.ParamModel],
    source: values.ValueSource,
    rng: random.Random,
    k: int = 3,
    bank: tuple[BankEntry, ...] | None = None,
) -> list[tuple[list[str], str]]:
    """Up to `k` adapted bank requests for `tool`, the closest in topic and coverage first, varied by `rng`."""
    bank = bank if bank is not None else load_bank()
    tool_leaves = leaves(models)
    wanted = topic_words(tool)
    scored = []
    for entry in bank:
        mapping = _mapping(entry, tool_leaves)
        if not mapping:
            continue
        topic = len(wanted & _content_words(f"{entry.topic} {entry.request}"))
        coverage = len(mapping) / max(1, len(tool_leaves))
        scored.append((topic, 2.0 * min(topic, 3) + 3.0 * coverage + rng.random(), entry))
    if any(topic for topic, _, _ in scored):  # requests about something else only when nothing is on topic
        scored = [item for item in scored if item[0] > 0]
    scored.sort(key=lambda item: -item[1])
    out: list[tuple[list[str], str]] = []
    for _, _, entry in scored[: 4 * k]:
        if len(out) >= k:
            break
        if rng.random() < 0.3 and len(scored) > k:
            continue  # skip some of the best, so that prompts differ from one request to the next
        adapted = adapt(entry, tool, models, source, rng)
        if adapted:
            out.append(adapted)
    return out
