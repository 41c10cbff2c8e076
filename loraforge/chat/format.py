"""One renderer for conversations with tools: the same template trains the adapter and serves it.

The template is a Jinja file that llama-server loads with `--jinja --chat-template-file`; here it is
rendered with jinja2 under the same settings Hugging Face uses, and a test proves that llama.cpp renders
and tokenizes it identically.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from loraforge.chat.families import CHATML, FAMILIES, declared_end_of_turn, family_for_model, family_of, for_base_model
from loraforge.constants import Artifact
from loraforge.errors import ConfigError
from loraforge.files import read_user_text


def _tojson(value: Any, indent: int | None = None) -> str:
    # Matches Hugging Face's and llama.cpp's tojson: ", " and ": " separators, UTF-8 kept as is.
    return json.dumps(value, ensure_ascii=False, indent=indent)


@lru_cache(maxsize=8)
def _compile(template_text: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = _tojson
    return env.from_string(template_text)


def builtin_template(name: str = CHATML.template) -> str:
    return resources.files("loraforge.chat").joinpath("templates").joinpath(name).read_text(encoding="utf-8")


_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "probe_lookup",
        "description": "Looks something up.",
        "parameters": {"type": "object", "properties": {"probe_key": {"type": "string"}}, "required": ["probe_key"]},
    },
}
_PROBE_CALL = {"type": "function", "function": {"name": "probe_lookup", "arguments": {"probe_key": "probe-value-7"}}}


def template_problem(text: str) -> str | None:
    """What keeps a chat template from training tool calls, or None. It must render a conversation with a
    tool, a call and its result, showing the tool's name, the call's arguments and the final answer, as
    prompts that grow turn by turn, each assistant turn ending in its family's end-of-turn text."""
    from jinja2 import TemplateError

    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "probe request"},
        {"role": "assistant", "content": "", "tool_calls": [_PROBE_CALL]},
        {"role": "tool", "content": '{"probe_result": 1}'},
        {"role": "assistant", "content": "probe answer"},
    ]
    fmt = ChatFormat.of(text)
    try:
        rendered = fmt.render(messages, [_PROBE_TOOL])
        fmt.render(messages[:1], [_PROBE_TOOL], add_generation_prompt=True)
        missing = [
            part for part in ("probe_lookup", "probe_key", "probe-value-7", "probe answer") if part not in rendered
        ]
        if missing:
            return (
                f"a conversation with a tool call renders without {', '.join(missing)}, so the adapter could not "
                "learn to call tools with it"
            )
        fmt.segments(messages, [_PROBE_TOOL])
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)  # syntax errors carry it, others do not
        return f"{f'line {line}: ' if line else ''}the template does not render ({exc})".rstrip(".")
    except ConfigError as exc:
        return str(exc).rstrip(".")
    return None


def load_template_file(path: Path | str) -> str:
    """A user's chat template (`--chat-template FILE`), checked with `template_problem`."""
    path = Path(path)
    fix = (
        "Pass a Jinja chat template that renders `tools` and assistant `tool_calls` (see loraforge's own, "
        "in loraforge/chat/templates/)."
    )
    if not path.exists():
        raise ConfigError(f"--chat-template {path}: no such file.", fix=fix)
    text = read_user_text(path, fix)
    problem = template_problem(text)
    if problem:
        raise ConfigError(f"--chat-template {path}{',' if problem.startswith('line ') else ':'} {problem}.", fix=fix)
    return text


def adapter_template(
    folder: Path | None, model_template: str | None, override: str | None = None, architecture: str | None = None
) -> str:
    """The chat template to serve or score an adapter with: `override` (a checked --chat-template), else the
    template saved with the adapter, else loraforge's tool template for the base model's markup."""
    if override is not None:
        return override
    saved = Path(folder) / Artifact.CHAT_TEMPLATE.value if folder is not None else None
    if saved is not None and saved.is_file():
        return read_user_text(saved, "Delete it to use loraforge's template for the base model.")
    return template_for_model(model_template, architecture=architecture)


# Variables llama.cpp fills with today's date when it renders a template, where training here cannot
# know the day it will be served: a model's own template that prints one is replaced by its family's.
_SERVER_FILLED = ("date_string", "strftime_now", "datetime")


def template_for_model(model_template: str | None, override: str | None = None, architecture: str | None = None) -> str:
    """The chat template to train and serve with: `override` (a template the user passed with
    --chat-template, already checked), else the model's own template where it renders tools and tool calls
    (the format the model was tuned on), else loraforge's tool template for the model's family (from its
    architecture when it ships no template: a base model)."""
    if override is not None:
        return override
    if model_template and template_problem(model_template) is None:
        if not any(name in model_template for name in _SERVER_FILLED):
            return model_template
    family = family_for_model(model_template, architecture)
    if family is None:
        raise ConfigError(
            "This model's chat template renders no tool calls, and its markup is not one of the families "
            f"loraforge has a tool template for ({', '.join(f.name for f in FAMILIES)}).",
            fix="Pass a Jinja chat template that renders tools and tool calls with --chat-template FILE.",
        )
    template = builtin_template(family.template)
    return template if model_template else for_base_model(family, template)


def _written_end_of_turn(template: str) -> str:
    """The tag a template writes after an assistant turn ("<|end|>", "</s>", "[/ANSWER]"); ChatML's when it
    writes none that can be told."""
    from jinja2 import TemplateError

    answer = "probe-answer-7"
    messages = [{"role": "user", "content": "probe question"}, {"role": "assistant", "content": answer}]
    try:
        text = _compile(template).render(messages=messages, tools=None, add_generation_prompt=False)
    except TemplateError:
        return CHATML.end_of_turn
    match = re.match(r"\s*(<[^<>\s]+>|\[[^\[\]\s]+\])", text.partition(answer)[2])
    return match.group(1) if match else CHATML.end_of_turn


def normalise_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool-call arguments become objects, as llama.cpp hands them to the template."""
    out = []
    for message in messages:
        message = dict(message)
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                fn = dict(call.get("function", call))
                if isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.loads(fn["arguments"])
                calls.append({"type": "function", "function": fn})
            message["tool_calls"] = calls
        if message.get("content") is None:
            message["content"] = ""
        out.append(message)
    return out


@dataclass(frozen=True)
class ChatFormat:
    """A chat template plus the text that ends an assistant turn."""

    template: str
    eos_token: str = "<|im_end|>"

    @classmethod
    def of(cls, template: str) -> ChatFormat:
        """A template with the end-of-turn text of its family, or for a template of no known family (a
        user's --chat-template), the markup it writes right after an assistant's words."""
        declared = declared_end_of_turn(template)
        if declared:
            return cls(template, declared)
        family = family_of(template)
        return cls(template, family.end_of_turn if family else _written_end_of_turn(template))

    def render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        add_generation_prompt: bool = False,
    ) -> str:
        return _compile(self.template).render(
            messages=normalise_messages(messages),
            tools=tools or None,
            add_generation_prompt=add_generation_prompt,
        )

    def segments(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[tuple[str, bool]]:
        """Split a conversation into (text, trained) pieces.

        Each assistant turn is trained from the start of its content up to and including the end-of-turn
        token; everything else (system, user, tool results, markup) is context only.
        """
        pieces: list[tuple[str, bool]] = []
        done = ""
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.render(messages[:index], tools, add_generation_prompt=True)
            full = self.render(messages[: index + 1], tools)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise ConfigError("The chat template does not render conversations as growing prefixes.")
            turn = full[len(prompt) :]
            end = turn.rfind(self.eos_token)
            if end < 0:
                raise ConfigError(f"The chat template does not end assistant turns with {self.eos_token!r}.")
            end += len(self.eos_token)
            pieces.append((prompt[len(done) :], False))
            pieces.append((turn[:end], True))
            done = full[: len(prompt) + end]
        full = self.render(messages, tools)
        if len(full) > len(done):
            pieces.append((full[len(done) :], False))
        return [(text, trained) for text, trained in pieces if text]
