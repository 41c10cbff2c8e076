"""What a server behind a URL can do, probed once: llama.cpp's own server, or any OpenAI-compatible one
(vLLM, TGI, Ollama, llama-cpp-python's server, a hosted API).

loraforge asks for no more than the server has: llama.cpp's extras (slot pinning, `json_schema` and
`grammar` on completions) only on llama.cpp; JSON-schema output through the standard `response_format`
where the server takes it, else none (every answer is parsed and verified anyway, and a bad one is
retried as another attempt); few-shot completion prompts through chat where there is no completions route.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loraforge.errors import ServerError

_PROBE_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@dataclass(frozen=True)
class Capabilities:
    """What one server offers. The default is llama.cpp's server, which offers everything loraforge uses."""

    engine: str = "llama.cpp"  # "llama.cpp", "llama-cpp-python", or "openai" for any other OpenAI-compatible server
    slots: int = 0  # llama.cpp's parallel slots (/props), for pinning a prompt family to one; 0: no pinning
    completions: bool = True  # /v1/completions answers; else few-shot prompts go through chat
    response_format: bool = True  # chat takes a JSON-schema `response_format`
    model: str | None = None  # the model id that OpenAI-compatible servers want in every request
    # The model ids that answer with adapter 0, 1, ...: a server that loads each adapter as a model of its
    # own (llama-cpp-python's). Empty: adapters are chosen per request by scale, as on llama.cpp's server.
    adapter_models: tuple[str, ...] = ()

    @property
    def llama_cpp(self) -> bool:
        return self.engine == "llama.cpp"

    @property
    def grammars(self) -> bool:
        """Completions take a GBNF `grammar`: llama.cpp's server and llama-cpp-python's."""
        return self.engine in ("llama.cpp", "llama-cpp-python")

    def format_for(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The chat request's `response_format` for output that follows `schema`, in this server's dialect:
        llama-cpp-python takes the schema inside a `json_object` format, the others OpenAI's `json_schema`."""
        if self.engine == "llama-cpp-python":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}

    def describe(self) -> str:
        """One line for the log."""
        if self.llama_cpp:
            return f"llama.cpp server, {self.slots} slots (pinned per prompt family), JSON schema and grammars"
        kind = "llama-cpp-python server" if self.engine == "llama-cpp-python" else "OpenAI-compatible server"
        parts = [
            f"{kind} (model {self.model or 'unnamed'})",
            "completions" if self.completions else "chat only (few-shot prompts sent as chat)",
            "JSON-schema output" if self.response_format else "no structured output (answers verified, retried)",
        ]
        if self.grammars:
            parts.append("grammars")
        return ", ".join(parts)


LLAMA_CPP = Capabilities()


async def probe(client: Any, model: str | None = None) -> Capabilities:
    """Ask the server behind `client` (a LlamaClient) what it offers, with a few tiny requests. `model` is
    the model to ask an OpenAI-compatible server for; without it, the only one the server lists."""
    props = await _try(client, "GET", "/props")
    if isinstance(props, dict) and "total_slots" in props:
        return Capabilities(slots=int(props.get("total_slots") or 0))
    if model is None:
        models = await _try(client, "GET", "/v1/models")
        listed = models.get("data") if isinstance(models, dict) else None
        names = [m["id"] for m in listed or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]
        if len(names) > 1:
            raise ServerError(
                f"The server at {client.base_url} serves {len(names)} models ({', '.join(names[:5])}).",
                fix="Name the one to use with --server-model NAME.",
            )
        model = names[0] if names else None
    base: dict[str, Any] = {"model": model} if model else {}
    completions = await _try(client, "POST", "/v1/completions", {**base, "prompt": "Hi", "max_tokens": 1})
    chat = {**base, "messages": [{"role": "user", "content": 'Reply {"ok": true}'}], "max_tokens": 8}
    structured = await _try(
        client,
        "POST",
        "/v1/chat/completions",
        {**chat, "response_format": {"type": "json_schema", "json_schema": {"name": "probe", "schema": _PROBE_SCHEMA}}},
    )
    if structured is None and await _try(client, "POST", "/v1/chat/completions", chat) is None:
        raise ServerError(
            f"The server at {client.base_url} answers neither llama.cpp's /props nor OpenAI's /v1/chat/completions.",
            fix="Pass the URL of an OpenAI-compatible server (the part before /v1), with its API key in "
            "LORAFORGE_API_KEY if it needs one.",
        )
    return Capabilities(
        engine="openai", completions=completions is not None, response_format=structured is not None, model=model
    )


async def _try(client: Any, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """The answer, or None when the server refuses or lacks the route. A refusal is not retried; a rate
    limit or a server error is, a little, so that a busy server is not taken for one that lacks a feature."""
    try:
        return await client.request_once(method, path, body, retries=2)
    except ServerError:
        return None
