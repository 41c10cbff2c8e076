"""Several llama.cpp servers behind one client interface: each request goes to the least busy one."""

from __future__ import annotations

import itertools
from typing import Any

from loraforge.runtime.client import ChatResult, LlamaClient


class ClientPool:
    """Balances requests across clients by their number of requests in flight."""

    def __init__(self, clients: list[LlamaClient]) -> None:
        if not clients:
            raise ValueError("a pool needs at least one client")
        self.clients = clients
        self._turn = itertools.count()

    async def __aenter__(self) -> ClientPool:
        for client in self.clients:
            await client.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for client in self.clients:
            await client.close()

    @property
    def concurrency(self) -> int:
        return sum(c.concurrency for c in self.clients)

    def pick(self) -> LlamaClient:
        turn = next(self._turn)
        order = self.clients[turn % len(self.clients) :] + self.clients[: turn % len(self.clients)]
        return min(order, key=lambda c: c.active / c.concurrency)

    async def complete(self, prompt: str | list[int], **kwargs: Any) -> str:
        return await self.pick().complete(prompt, **kwargs)

    async def chat(self, messages: list[dict[str, Any]], **kwargs: Any) -> ChatResult:
        return await self.pick().chat(messages, **kwargs)

    def __repr__(self) -> str:
        return f"<ClientPool {self.clients!r}>"
