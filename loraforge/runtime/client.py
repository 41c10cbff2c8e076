"""An asyncio HTTP client for llama.cpp's OpenAI-compatible API, with one concurrency limit and timeouts."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loraforge.errors import ServerError
from loraforge.runtime.capabilities import LLAMA_CPP, Capabilities


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each phase of a request."""

    connect: float = 10.0
    read: float = 300.0
    pool: float = 900.0  # waiting for a free concurrency slot


STALL_FIX = (
    "Check that the server still answers (`curl URL/health`) and stop other heavy jobs on this machine, or "
    "lower --parallel; an interrupted run continues with `loraforge run --resume RUN_FOLDER`."
)


class PoolTimeout(ServerError):
    """No concurrency slot became free in time."""


@dataclass
class ChatResult:
    """One chat completion: the text, the parsed tool calls (OpenAI form), and the raw answer."""

    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def retry_after(header: str | None, attempt: int, cap: float = 30.0) -> float:
    """Seconds to wait after a 429: the server's Retry-After (in seconds) when it gives one, else an
    exponential backoff; never more than `cap`, so that a run does not hang on a rate limit."""
    try:
        wanted = float(header) if header is not None else None
    except ValueError:
        wanted = None  # an HTTP date, or garbage: back off as usual
    if wanted is None or wanted < 0:
        wanted = min(8.0, 0.5 * 2**attempt) * (0.5 + random.random())
    return min(cap, wanted)


def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` in OpenAI's strict wire form, which servers other than llama.cpp's validate: every tool call
    with an id, `type` and its arguments as a JSON string; every tool result with the id of its call, in
    order. The strings are the JSON that the chat template would print, so the prompt stays the same."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []  # ids of the last assistant turn's calls that have no result yet
    for turn, message in enumerate(messages):
        message = dict(message)
        if message.get("role") == "assistant" and message.get("tool_calls"):
            calls: list[dict[str, Any]] = []
            for index, call in enumerate(message["tool_calls"]):
                function = dict(call.get("function") or {k: call[k] for k in ("name", "arguments") if k in call})
                if not isinstance(function.get("arguments"), str):
                    function["arguments"] = json.dumps(function.get("arguments") or {}, ensure_ascii=False)
                calls.append({"id": call.get("id") or f"call_{turn}_{index}", "type": "function", "function": function})
            message["tool_calls"] = calls
            message["content"] = message.get("content") or ""
            pending = [c["id"] for c in calls]
        elif message.get("role") == "tool" and "tool_call_id" not in message:
            message["tool_call_id"] = pending.pop(0) if pending else f"call_{turn}"
        out.append(message)
    return out


class LlamaClient:
    """Talks to one llama.cpp server. `recover` is awaited after a connection failure (e.g. to restart it)."""

    def __init__(
        self,
        base_url: str,
        *,
        concurrency: int = 4,
        timeouts: Timeouts = Timeouts(),
        retries: int = 3,
        adapter_count: int = 0,
        recover: Callable[[], Awaitable[str]] | None = None,
        affinity_slots: int = 0,
        api_key: str | None = None,
        capabilities: Capabilities = LLAMA_CPP,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.concurrency = concurrency
        self.timeouts = timeouts
        self.retries = retries
        self.adapter_count = adapter_count
        self.recover = recover
        self.affinity_slots = affinity_slots
        self.capabilities = capabilities
        self._families: dict[str, int] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._active = 0
        self._finished = 0  # requests done (or failed): progress, for the slot wait
        self._recover_lock = asyncio.Lock()

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(connect=self.timeouts.connect, sock_read=self.timeouts.read)

    async def __aenter__(self) -> LlamaClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout(), headers=self._headers)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await asyncio.shield(session.close())

    def __repr__(self) -> str:
        return f"<LlamaClient {self.base_url} active={self._active}/{self.concurrency}>"

    @property
    def active(self) -> int:
        """Requests in flight or waiting for a slot."""
        return self._active

    async def _acquire(self) -> None:
        """Wait for a request slot. A busy machine makes every request slow, so waiting is fine while
        requests keep finishing or the server still answers /health (the requests in flight are each
        bounded by the read timeout and retries); a pool timeout in which none finished and the server
        did not answer is a stall."""
        while True:
            finished = self._finished
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout=self.timeouts.pool)
                return
            except asyncio.TimeoutError:
                if self._finished == finished and not await self._healthy():
                    raise PoolTimeout(
                        f"No request to the llama.cpp server at {self.base_url} finished within "
                        f"{self.timeouts.pool:.0f} s: it is stuck, or the machine is overloaded.",
                        fix=STALL_FIX,
                    ) from None

    async def _healthy(self) -> bool:
        """Whether the server answers GET /health with 200 (llama.cpp's: loaded and serving), outside the
        request slots. A server without /health (a hosted API) counts as not answering."""
        if self._session is None:
            return False
        try:
            timeout = aiohttp.ClientTimeout(total=max(1.0, self.timeouts.connect))
            async with self._session.get(self.base_url + "/health", timeout=timeout) as response:
                return response.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    async def request_once(self, method: str, path: str, body: dict[str, Any] | None = None, retries: int = 0) -> Any:
        """One request outside the typed calls (for probing what a server offers), with `retries` retries."""
        return await self._request(method, path, body, retries=retries)

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, retries: int | None = None
    ) -> Any:
        if self._session is None:
            raise RuntimeError("LlamaClient must be used as an async context manager.")
        self._active += 1
        try:
            await self._acquire()
            try:
                return await self._with_retries(method, path, body, self.retries if retries is None else retries)
            finally:
                self._finished += 1
                self._slots.release()
        finally:
            self._active -= 1

    async def _with_retries(self, method: str, path: str, body: dict[str, Any] | None, retries: int) -> Any:
        last: Exception | None = None
        for attempt in range(retries + 1):
            url = self.base_url + path
            if self._session is None:  # closed under a request still running (shutdown after an error)
                raise ServerError(f"llama.cpp request {path} was cut off: the client was closed.")
            try:
                async with self._session.request(method, url, json=body) as response:
                    text = await response.text()
                    if response.status == 429 and attempt < retries:  # a hosted API's rate limit
                        await asyncio.sleep(retry_after(response.headers.get("Retry-After"), attempt))
                        last = ServerError(f"{path} answered 429 (rate limited): {text[:200]}")
                        continue
                    if response.status >= 500:
                        raise ServerError(f"{path} answered {response.status}: {text[:200]}")
                    if response.status >= 400:
                        # A request llama.cpp refuses will be refused again: no retry.
                        raise ServerError(f"{path} refused the request ({response.status}): {text[:300]}")
                    return json.loads(text) if text else {}
            except ServerError as exc:
                if "refused the request" in str(exc):
                    raise
                last = exc
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError, json.JSONDecodeError) as exc:
                last = exc
                if isinstance(exc, aiohttp.ClientConnectionError) and self.recover is not None:
                    await self._recover(url)
            if attempt < retries:
                await asyncio.sleep(min(8.0, 0.5 * 2**attempt) * (0.5 + random.random()))
        raise ServerError(
            f"llama.cpp request {path} to {self.base_url} failed after {retries + 1} attempts "
            f"(each allowed {self.timeouts.read:.0f} s): {last!r}",
            fix=STALL_FIX,
        )

    async def _recover(self, failed_url: str) -> None:
        async with self._recover_lock:
            if not failed_url.startswith(self.base_url):
                return  # another request already recovered the server
            assert self.recover is not None
            # Drop every pooled connection first: a server shutting down waits for its open connections.
            old, self._session = self._session, aiohttp.ClientSession(timeout=self._timeout(), headers=self._headers)
            if old is not None:
                await asyncio.shield(old.close())
            self.base_url = (await self.recover()).rstrip("/")

    def _slot_field(self, family: str | None) -> dict[str, Any]:
        """Pin a prompt family to one server slot, so its shared prefix stays in that slot's cache.

        On 2 cores, prompt processing dominates a small teacher's time, and a warm slot skips all but
        the new tail of the prompt. Families are given slots in order of first use. Only llama.cpp's server
        has slots.
        """
        if not self.affinity_slots or family is None or not self.capabilities.llama_cpp:
            return {}
        slot = self._families.setdefault(family, len(self._families) % self.affinity_slots)
        return {"id_slot": slot}

    def _model_fields(self, adapter: int | None) -> dict[str, Any]:
        """The fields that choose what answers a request: the base model, or adapter number `adapter`.

        On llama.cpp's server every loaded adapter gets an explicit scale per request. A server that loads
        each adapter as a model of its own (llama-cpp-python's) is asked for that model by name instead.
        """
        caps = self.capabilities
        if caps.adapter_models:
            if adapter is not None and not 0 <= adapter < len(caps.adapter_models):
                raise ServerError(f"Adapter {adapter} was requested but the server has {len(caps.adapter_models)}.")
            return {"model": caps.model if adapter is None else caps.adapter_models[adapter]}
        named = {"model": caps.model} if caps.model else {}
        if self.adapter_count == 0:
            if adapter is not None:
                raise ServerError("An adapter was requested but the server has none loaded.")
            return named
        scales = [{"id": i, "scale": 1.0 if i == adapter else 0.0} for i in range(self.adapter_count)]
        # The server drops a slot's cached prompt when the adapter scales change, so cached prefixes are
        # safe as long as the RAM prompt cache is off (it gave corrupt outputs here): see ServerConfig.
        return {**named, "lora": scales}

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
    ) -> ChatResult:
        body: dict[str, Any] = {
            "messages": messages if self.capabilities.llama_cpp else openai_messages(messages),
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            **self._model_fields(adapter),
        }
        if tools:
            body["tools"] = tools
        if json_schema is not None and self.capabilities.response_format:
            body["response_format"] = self.capabilities.format_for(json_schema)
        if seed is not None:
            body["seed"] = seed
        if stop:
            body["stop"] = stop
        answer = await self._request("POST", "/v1/chat/completions", body)
        choice = (answer.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        return ChatResult(
            content=message.get("content") or "",
            tool_calls=message.get("tool_calls") or [],
            finish_reason=choice.get("finish_reason"),
            raw=answer,
        )

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
    ) -> str:
        """Raw text completion (OpenAI /v1/completions): what a tiny teacher writes best.

        `family` names prompts that share a long prefix (e.g. "request:get_weather"); see `_slot_field`.
        `json_schema` constrains the output on llama.cpp only and `grammar` on llama.cpp and llama-cpp-python;
        elsewhere the caller's checks catch a bad answer. A server without completions gets the prompt as
        one chat message.
        """
        caps = self.capabilities
        if not caps.completions:
            if not isinstance(prompt, str):
                raise ServerError("This server has no completions route, so it cannot take a prompt of token ids.")
            answer = await self.chat(
                [{"role": "user", "content": prompt}],
                json_schema=json_schema,
                adapter=adapter,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                seed=seed,
                stop=stop,
            )
            return answer.content
        body: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            **self._model_fields(adapter),
            **self._slot_field(family),
        }
        if stop:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = seed
        if json_schema is not None and caps.llama_cpp:
            body["json_schema"] = json_schema
        if grammar is not None and caps.grammars:
            body["grammar"] = grammar
        answer = await self._request("POST", "/v1/completions", body)
        return ((answer.get("choices") or [{}])[0]).get("text") or ""

    async def _greedy(self, prompt: list[int], count: int, adapter: int | None, top: int = 0) -> dict[str, Any]:
        """llama.cpp's native /completion: `count` greedy tokens after `prompt`, with `top` log-probabilities."""
        body = {
            "prompt": prompt,
            "n_predict": count,
            "temperature": 0.0,
            "top_k": 1,
            "return_tokens": True,
            **({"n_probs": top} if top else {}),
            **self._model_fields(adapter),
        }
        return await self._request("POST", "/completion", body)

    async def next_tokens(self, prompt: list[int], count: int, *, adapter: int | None = None) -> list[int]:
        """The ids of `count` greedy tokens after `prompt`."""
        return list((await self._greedy(prompt, count, adapter)).get("tokens") or [])

    async def next_tokens_with_logprobs(
        self, prompt: list[int], count: int, *, adapter: int | None = None, top: int = 5
    ) -> list[tuple[int, dict[int, float]]]:
        """Like `next_tokens`, with the log-probabilities of the `top` likeliest tokens at each step."""
        answer = await self._greedy(prompt, count, adapter, top)
        out = []
        for token, step in zip(answer.get("tokens") or [], answer.get("completion_probabilities") or []):
            candidates = step.get("top_logprobs") or []
            out.append((token, {c["id"]: c["logprob"] for c in candidates if "id" in c and "logprob" in c}))
        return out

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        answer = await self._request(
            "POST", "/tokenize", {"content": text, "add_special": add_special, "parse_special": True}
        )
        return [t if isinstance(t, int) else t["id"] for t in answer.get("tokens", [])]

    async def apply_template(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        body: dict[str, Any] = {"messages": messages}
        if tools:
            body["tools"] = tools
        return (await self._request("POST", "/apply-template", body))["prompt"]

    async def props(self) -> dict[str, Any]:
        return await self._request("GET", "/props")
