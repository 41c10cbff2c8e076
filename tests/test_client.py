"""Fault injection at the HTTP boundary: a fake server that fails, then recovers."""

import asyncio

import pytest
from aiohttp import web

from loraforge.errors import ServerError
from loraforge.runtime.client import LlamaClient, Timeouts
from loraforge.runtime.pool import ClientPool


async def start(app):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def completion_app(failures: int, seen: list):
    async def handler(request):
        body = await request.json()
        seen.append(body)
        if len(seen) <= failures:
            return web.Response(status=503, text="loading")
        return web.json_response({"choices": [{"text": "ok"}]})

    app = web.Application()
    app.router.add_post("/v1/completions", handler)
    return app


def test_retries_server_errors_then_succeeds():
    async def scenario():
        seen = []
        runner, url = await start(completion_app(2, seen))
        try:
            async with LlamaClient(url, retries=3) as client:
                assert await client.complete("hi") == "ok"
        finally:
            await runner.cleanup()
        return seen

    assert len(asyncio.run(scenario())) == 3


def test_gives_up_with_a_server_error():
    async def scenario():
        runner, url = await start(completion_app(99, []))
        try:
            async with LlamaClient(url, retries=1) as client:
                await client.complete("hi")
        finally:
            await runner.cleanup()

    with pytest.raises(ServerError, match=r"to http://127\.0\.0\.1:\d+ failed after 2 attempts") as failed:
        asyncio.run(scenario())
    assert "/health" in failed.value.fix  # the error says what to do, not only what happened


def test_dead_server_is_recovered_and_request_continues():
    async def scenario():
        seen = []
        runner, url = await start(completion_app(0, seen))
        calls = []

        async def recover():
            calls.append(1)
            return url

        try:
            async with LlamaClient("http://127.0.0.1:9", retries=2, recover=recover) as client:
                text = await client.complete("hi")
        finally:
            await runner.cleanup()
        return text, calls

    text, calls = asyncio.run(scenario())
    assert text == "ok" and calls == [1]


def test_adapter_scales_are_explicit_per_request():
    async def scenario():
        seen = []
        runner, url = await start(completion_app(0, seen))
        try:
            async with LlamaClient(url, adapter_count=2) as client:
                await client.complete("a", adapter=1)
                await client.complete("b")
        finally:
            await runner.cleanup()
        return seen

    first, second = asyncio.run(scenario())
    assert first["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]
    assert second["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]


def test_concurrency_limit_and_pool_timeout():
    async def scenario():
        active, peak = 0, 0

        async def slow(request):
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.05)
            active -= 1
            return web.json_response({"choices": [{"text": "x"}]})

        app = web.Application()
        app.router.add_post("/v1/completions", slow)
        runner, url = await start(app)
        try:
            async with LlamaClient(url, concurrency=2) as client:
                await asyncio.gather(*(client.complete(str(i)) for i in range(6)))
            async with LlamaClient(url, concurrency=1, timeouts=Timeouts(pool=0.01)) as client:
                with pytest.raises(ServerError, match="No request to the llama.cpp server at .* finished") as stall:
                    await asyncio.gather(*(client.complete(str(i)) for i in range(3)))
                assert "--parallel" in stall.value.fix and "--resume" in stall.value.fix
        finally:
            await runner.cleanup()
        return peak

    assert asyncio.run(scenario()) == 2


def slow_completions(seconds: float, requests: int, pool: float, health: bool) -> list[str]:
    """`requests` completions through one slot from a server that takes `seconds` for each (and answers
    /health when `health`), with a pool timeout of `pool` seconds."""

    async def scenario():
        async def slow(request):
            await asyncio.sleep(seconds)
            return web.json_response({"choices": [{"text": "x"}]})

        async def healthy(request):
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_post("/v1/completions", slow)
        if health:
            app.router.add_get("/health", healthy)
        runner, url = await start(app)
        try:
            async with LlamaClient(url, concurrency=1, timeouts=Timeouts(pool=pool)) as client:
                return await asyncio.gather(*(client.complete(str(i)) for i in range(requests)))
        finally:
            await runner.cleanup()

    return asyncio.run(scenario())


def test_a_slow_server_that_keeps_finishing_requests_is_waited_for():
    """Six queued requests behind one slot take 5x the pool timeout in all, but one finishes every 0.05 s."""
    assert slow_completions(0.05, 6, pool=0.08, health=False) == ["x"] * 6


def test_a_server_that_answers_health_is_waited_for_even_when_no_request_finishes_in_a_pool_timeout():
    """Each request takes 4 pool timeouts: a loaded machine, not a dead server, because /health answers."""
    assert slow_completions(0.2, 3, pool=0.05, health=True) == ["x"] * 3


def test_the_same_server_without_health_is_a_stall():
    with pytest.raises(ServerError, match="finished within"):
        slow_completions(0.2, 3, pool=0.05, health=False)


def test_a_request_retrying_when_the_client_closes_ends_in_a_server_error():
    """Shutdown after an error closes the client under requests still retrying: they end in the project's
    error, not in aiohttp's assertion about a closed session."""

    async def scenario():
        async def failing(request):
            return web.Response(status=500, text="busy")

        app = web.Application()
        app.router.add_post("/v1/completions", failing)
        runner, url = await start(app)
        try:
            async with LlamaClient(url, retries=5) as client:
                task = asyncio.ensure_future(client.complete("hi"))
                await asyncio.sleep(0.3)  # the first attempt failed; the client is between retries
                await client.close()
                with pytest.raises(ServerError, match="client was closed"):
                    await task
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_a_rate_limit_is_waited_out_as_the_server_asks_then_retried():
    from loraforge.runtime.client import retry_after

    async def scenario():
        seen = []

        async def handler(request):
            seen.append(await request.json())
            if len(seen) <= 2:
                return web.Response(status=429, text="slow down", headers={"Retry-After": "0.2"})
            return web.json_response({"choices": [{"text": "ok"}]})

        app = web.Application()
        app.router.add_post("/v1/completions", handler)
        runner, url = await start(app)
        try:
            async with LlamaClient(url, retries=3) as client:
                started = asyncio.get_running_loop().time()
                answer = await client.complete("hi")
                waited = asyncio.get_running_loop().time() - started
        finally:
            await runner.cleanup()
        return answer, len(seen), waited

    answer, calls, waited = asyncio.run(scenario())
    assert answer == "ok" and calls == 3 and waited >= 0.4  # two waits of the server's 0.2 s
    assert retry_after("600", 0) == 30.0  # capped: a rate limit never stalls a run for long
    assert 0 < retry_after("Wed, 21 Oct 2026 07:28:00 GMT", 1) <= 1.5  # a date: plain backoff


def test_a_rate_limit_that_does_not_lift_ends_in_a_clear_error():
    async def scenario():
        async def handler(request):
            return web.Response(status=429, text="quota exceeded", headers={"Retry-After": "0"})

        app = web.Application()
        app.router.add_post("/v1/completions", handler)
        runner, url = await start(app)
        try:
            async with LlamaClient(url, retries=2) as client:
                await client.complete("hi")
        finally:
            await runner.cleanup()

    with pytest.raises(ServerError, match="429"):
        asyncio.run(scenario())


def test_when_one_request_fails_the_others_are_cancelled_before_the_error_is_raised():
    from loraforge.concurrency import gather_or_cancel

    still_running: list[str] = []

    async def slow(name: str) -> str:
        still_running.append(name)
        try:
            await asyncio.sleep(5)
        finally:
            still_running.remove(name)
        return name

    async def failing() -> str:
        await asyncio.sleep(0.01)
        raise RuntimeError("teacher down")

    async def main() -> None:
        with pytest.raises(RuntimeError, match="teacher down"):
            await gather_or_cancel(slow("a"), failing(), slow("b"))
        # Nothing is left running that could use a client the caller now closes.
        assert still_running == []

    asyncio.run(asyncio.wait_for(main(), timeout=2))


def test_gather_or_cancel_keeps_the_order_of_its_results():
    from loraforge.concurrency import gather_or_cancel

    async def after(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    assert asyncio.run(gather_or_cancel(after(0.03, 1), after(0.0, 2), after(0.01, 3))) == [1, 2, 3]


class FakeClient:
    def __init__(self, name, concurrency, active):
        self.name, self.concurrency, self.active = name, concurrency, active

    async def complete(self, prompt, **kwargs):
        return self.name


def test_pool_sends_work_to_the_least_busy_server():
    busy, idle = FakeClient("busy", 4, 3), FakeClient("idle", 4, 0)
    pool = ClientPool([busy, idle])
    assert {asyncio.run(pool.complete("x")) for _ in range(4)} == {"idle"}
    busy.active = 0
    assert {asyncio.run(pool.complete("x")) for _ in range(4)} == {"busy", "idle"}


def recording_app(seen: list, routes=("/v1/completions", "/v1/chat/completions")):
    async def handler(request):
        seen.append((request.path, await request.json()))
        if request.path == "/v1/completions":
            return web.json_response({"choices": [{"text": "done"}]})
        return web.json_response({"choices": [{"message": {"content": "done"}}]})

    app = web.Application()
    for route in routes:
        app.router.add_post(route, handler)
    return app


def test_a_server_with_one_model_per_adapter_is_asked_for_that_model_by_name():
    from loraforge.runtime.capabilities import Capabilities

    async def scenario():
        seen = []
        runner, url = await start(completion_app(0, seen))
        caps = Capabilities(engine="llama-cpp-python", model="base", adapter_models=("adapter-0", "adapter-1"))
        try:
            async with LlamaClient(url, adapter_count=2, capabilities=caps) as client:
                await client.complete("a", adapter=1)
                await client.complete("b")
                with pytest.raises(ServerError, match="Adapter 2 was requested but the server has 2"):
                    await client.complete("c", adapter=2)
        finally:
            await runner.cleanup()
        return seen

    first, second = asyncio.run(scenario())
    assert first["model"] == "adapter-1" and "lora" not in first
    assert second["model"] == "base" and "lora" not in second


def test_the_client_sends_only_what_the_servers_capabilities_allow():
    from loraforge.runtime.capabilities import Capabilities

    constrained = {"json_schema": {"type": "object"}, "grammar": 'root ::= "a"', "family": "request:x"}

    async def scenario(capabilities, routes):
        seen = []
        runner, url = await start(recording_app(seen, routes))
        try:
            async with LlamaClient(url, capabilities=capabilities, affinity_slots=capabilities.slots) as client:
                assert await client.complete("few-shot prompt", **constrained) == "done"
                await client.chat([{"role": "user", "content": "hi"}], json_schema={"type": "object"})
        finally:
            await runner.cleanup()
        return seen

    llama = asyncio.run(scenario(Capabilities(slots=4), ("/v1/completions", "/v1/chat/completions")))
    assert llama[0][0] == "/v1/completions" and {"json_schema", "grammar", "id_slot"} <= set(llama[0][1])
    assert "model" not in llama[0][1] and "response_format" in llama[1][1]
    openai = Capabilities(engine="openai", completions=True, response_format=False, model="m")
    sent = asyncio.run(scenario(openai, ("/v1/completions", "/v1/chat/completions")))
    assert sent[0][0] == "/v1/completions" and sent[0][1]["model"] == "m"
    assert not {"json_schema", "grammar", "id_slot", "lora"} & set(sent[0][1])
    assert "response_format" not in sent[1][1] and sent[1][1]["model"] == "m"
    chat_only = Capabilities(engine="openai", completions=False, response_format=True, model="m")
    sent = asyncio.run(scenario(chat_only, ("/v1/chat/completions",)))
    assert [path for path, _ in sent] == ["/v1/chat/completions"] * 2  # the few-shot prompt went as chat
    assert sent[0][1]["messages"] == [{"role": "user", "content": "few-shot prompt"}]
    assert sent[0][1]["response_format"]["json_schema"]["schema"] == {"type": "object"}


def test_llama_cpp_python_gets_grammars_and_its_own_json_schema_dialect():
    from loraforge.runtime.capabilities import Capabilities

    async def scenario():
        seen = []
        runner, url = await start(recording_app(seen, ("/v1/completions", "/v1/chat/completions")))
        caps = Capabilities(engine="llama-cpp-python", response_format=True, model="base")
        try:
            async with LlamaClient(url, capabilities=caps) as client:
                await client.complete("p", json_schema={"type": "object"}, grammar='root ::= "a"', family="f")
                await client.chat([{"role": "user", "content": "hi"}], json_schema={"type": "object"})
        finally:
            await runner.cleanup()
        return seen

    (_, completion), (_, chat) = asyncio.run(scenario())
    assert completion["grammar"] == 'root ::= "a"' and not {"json_schema", "id_slot"} & set(completion)
    assert chat["response_format"] == {"type": "json_object", "schema": {"type": "object"}}


def test_the_capability_probe_tells_llama_cpp_from_an_openai_endpoint():
    from loraforge.runtime.capabilities import probe

    async def scenario(app):
        runner, url = await start(app)
        try:
            async with LlamaClient(url, retries=0) as client:
                return await probe(client)
        finally:
            await runner.cleanup()

    def answer(body):
        async def handler(request):
            return web.json_response(body)

        return handler

    llama = web.Application()
    llama.router.add_get("/props", answer({"total_slots": 6}))
    assert asyncio.run(scenario(llama)).slots == 6

    openai = recording_app([], routes=("/v1/chat/completions",))  # chat only
    openai.router.add_get("/v1/models", answer({"data": [{"id": "served"}]}))
    found = asyncio.run(scenario(openai))
    assert (found.engine, found.completions, found.model, found.slots) == ("openai", False, "served", 0)
    assert "chat only" in found.describe()
    with pytest.raises(ServerError, match="neither llama.cpp's /props nor OpenAI's"):
        asyncio.run(scenario(web.Application()))

    def several():
        app = recording_app([], routes=("/v1/chat/completions",))
        app.router.add_get("/v1/models", answer({"data": [{"id": "chat-7b"}, {"id": "embed-small"}]}))
        return app

    with pytest.raises(ServerError, match="serves 2 models") as info:
        asyncio.run(scenario(several()))
    assert "--server-model" in info.value.fix

    async def named(app, model):
        runner, url = await start(app)
        try:
            async with LlamaClient(url, retries=0) as client:
                return await probe(client, model)
        finally:
            await runner.cleanup()

    assert asyncio.run(named(several(), "chat-7b")).model == "chat-7b"


def test_messages_go_to_openai_servers_in_the_strict_wire_form_with_the_same_json():
    import json

    from loraforge.runtime.client import openai_messages

    arguments = {"city": "Zürich", "days": 2}
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"type": "function", "function": {"name": "forecast", "arguments": arguments}},
                {"name": "now", "arguments": '{"city": "Bern"}'},
            ],
        },
        {"role": "tool", "content": '{"ok": true}'},
        {"role": "tool", "content": '{"ok": false}'},
    ]
    sent = openai_messages(messages)
    calls = sent[1]["tool_calls"]
    assert [c["type"] for c in calls] == ["function", "function"] and sent[1]["content"] == ""
    assert calls[0]["function"]["arguments"] == json.dumps(arguments, ensure_ascii=False)  # as the template prints it
    assert calls[1]["function"] == {"name": "now", "arguments": '{"city": "Bern"}'}
    assert [m["tool_call_id"] for m in sent[2:]] == [c["id"] for c in calls] and len({c["id"] for c in calls}) == 2
    assert messages[1]["tool_calls"][0]["function"]["arguments"] is arguments  # the caller's rows are not changed
