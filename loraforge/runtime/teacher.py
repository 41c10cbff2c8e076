"""The teacher: one or more llama.cpp servers that write synthetic data, restarted if they die."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from loraforge.runtime.capabilities import probe
from loraforge.runtime.config import Engine, ServerConfig
from loraforge.runtime.pool import ClientPool
from loraforge.runtime.server import LlamaServer, make_server


def restarter(server: LlamaServer):
    """A `recover` hook for LlamaClient: restart the server and hand back its new address."""

    async def recover() -> str:
        await asyncio.to_thread(server.restart)
        return server.base_url

    return recover


@asynccontextmanager
async def teacher(
    *,
    model: Path | None,
    server_urls: list[str] | None = None,
    llama_server: Path | None = None,
    parallel: int = 2,
    slots: int = 10,
    n_ctx_per_slot: int = 1536,
    on_info: Callable[[str], None] | None = None,
    server_model: str | None = None,
    engine: Engine = "xllamacpp",
) -> AsyncIterator[Any]:
    """A client for the teacher: a pool over `server_urls`, or a server that loraforge starts and owns
    (on `model`, which may be None only with `server_urls`).

    A server loraforge starts gets more slots than requests in flight, and each prompt family is pinned
    to a slot so that its long shared prefix stays cached: on 2 cores that, not concurrency, is what
    makes generation faster (see benchmarks/RESULTS.md). A server behind a URL is probed once for what it
    offers (llama.cpp's server, or any OpenAI-compatible one), and `on_info` hears the result.
    """
    async with AsyncExitStack() as stack:
        if server_urls:
            clients = []
            for url in server_urls:
                server = await stack.enter_async_context(make_server(ServerConfig(server_url=url)))
                async with server.client(concurrency=1) as asking:
                    offers = await probe(asking, server_model)
                if on_info:
                    on_info(f"teacher {url}: {offers.describe()}")
                clients.append(server.client(concurrency=parallel, affinity_slots=offers.slots, capabilities=offers))
            client: Any = ClientPool(clients) if len(clients) > 1 else clients[0]
        else:
            slots = max(slots, parallel)
            config = ServerConfig(
                model_path=model,
                llama_server=llama_server,
                engine=engine,
                n_parallel=slots,
                n_ctx=n_ctx_per_slot * slots,
            )
            server = await stack.enter_async_context(make_server(config))
            if on_info and not server.capabilities.llama_cpp:
                on_info(f"teacher: {server.capabilities.describe()}")
            client = server.client(concurrency=parallel, recover=restarter(server), affinity_slots=slots)
        yield await stack.enter_async_context(client)
