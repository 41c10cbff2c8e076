"""One renderer for conversations with tools: the same template trains the adapter and serves it.

The template is a Jinja file that llama-server loads with `--jinja --chat-template-file`; here it is
rendered with jinja2 under the same settings Hugging Face uses, and a test proves that llama.cpp renders
and tokenizes it identically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from loraforge.errors import ConfigError

CHATML_TOOLS = "chatml-tools.jinja"


def _tojson(value: Any, indent: int | None = None) -> str:
    # Matches Hugging Face's and llama.cpp's tojson: ", " and ": " separators, UTF-8 kept as is.
    return json.dumps(value, ensure_ascii=False, indent=indent)


@lru_cache(maxsize=8)
def _compile(template_text: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = _tojson
    return env.from_string(template_text)


def builtin_template(name: str = CHATML_TOOLS) -> str:
    return resources.files("loraforge.trainers").joinpath("templates").joinpath(name).read_text(encoding="utf-8")


def template_for_model(model_template: str | None) -> str:
    """loraforge's tool template for the model's chat markup. Only ChatML is known so far."""
    if model_template is None or "<|im_start|>" in model_template:
        return builtin_template(CHATML_TOOLS)
    raise ConfigError(
        "This model does not use ChatML markup, and loraforge has no tool template for it yet.",
        fix="Pass a Jinja chat template that renders tools and tool calls with --chat-template FILE.",
    )


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
    """A chat template plus the token that ends an assistant turn."""

    template: str
    eos_token: str = "<|im_end|>"

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
