"""What the generators, the evaluators and the judge need of a model server: a typed protocol, so that a
single client, a pool of them, or a test's fake all fit."""

from __future__ import annotations

from typing import Any, Protocol

from loraforge.runtime.client import ChatResult


class ChatClient(Protocol):
    """Chat and raw completions on one OpenAI-compatible endpoint (or a pool of them)."""

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        json_schema: dict[str, Any] | None = None,
        adapter: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        seed: int | None = None,
        stop: list[str] | None = None,
    ) -> ChatResult: ...

    async def complete(
        self,
        prompt: str | list[int],
        *,
        stop: list[str] | None = None,
        max_tokens: int = 64,
        temperature: float = 0.8,
        top_p: float = 0.95,
        seed: int | None = None,
        json_schema: dict[str, Any] | None = None,
        adapter: int | None = None,
        family: str | None = None,
        grammar: str | None = None,
    ) -> str: ...
