"""Running many coroutines at once without leaving any behind when one fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def gather_or_cancel(*aws: Awaitable[T]) -> list[T]:
    """Like `asyncio.gather`, but when one fails the others are cancelled and awaited before the error
    is raised, so none of them goes on using a client that the caller is about to close."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def examples_by_index(
    make: Callable[[int], Awaitable[dict[str, Any] | None]],
    indices: list[int],
    on_example: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """`make(index)` for every index at once; the rows it returns (None when it gave up), each handed to
    `on_example` as it comes, then in index order (`row["meta"]["index"]`)."""
    results: list[dict[str, Any]] = []

    async def work(index: int) -> None:
        row = await make(index)
        if row is not None:
            results.append(row)
            if on_example:
                on_example(row)

    await gather_or_cancel(*(work(i) for i in indices))
    return sorted(results, key=lambda r: r["meta"]["index"])
