"""A small HTTP server for an encoder with a hot-swappable LoRA adapter (the Lyra ADR's ML server, seed 002).

llama.cpp has no sequence-classification heads nor BERT LoRA adapters, so encoders are served with PEFT:

- `GET /health`: the task, the base and the adapter in use.
- `POST /nli/adapter/load {"adapter_path": ...}` (also `/adapter/load`): builds the adapter on a fresh copy
  of the base, checks it (adapters.check, then one forward pass), and only then swaps it in; a request in
  flight finishes on the old one. A path outside the adapters root, or an adapter that does not fit, is
  refused with a 400 and the reason, and the old adapter stays.
- `POST /nli/predict {"premise", "hypothesis"}` or `{"text"}` (also `/classify`): label and probabilities.
- `POST /embed {"texts": [...]}`: unit-length embeddings.

It binds to 127.0.0.1 by default, answers only requests addressed to that address, and takes POSTs only
as JSON, so that a web page open in the user's browser cannot swap the adapter. The model runs in one
worker thread, so requests never compute in parallel on a small CPU, and the event loop stays free.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from aiohttp import web

from loraforge.encoders import adapters
from loraforge.encoders.config import EncoderTask
from loraforge.encoders.data import LabeledText
from loraforge.encoders.embed import embed
from loraforge.encoders.evaluate import probabilities as classifier_probabilities
from loraforge.encoders.model import load_embedder, load_tokenizer
from loraforge.errors import ConfigError


@dataclass
class Served:
    """What the server answers with; replaced whole on a swap, never changed in place."""

    model: Any
    adapter: str | None
    labels: list[str] = field(default_factory=list)


class EncoderServer:
    def __init__(self, model_dir: Path, task: EncoderTask, adapters_root: Path, max_length: int = 256) -> None:
        self.model_dir, self.task, self.max_length = Path(model_dir), task, max_length
        self.root = Path(adapters_root).resolve()
        self.tokenizer = load_tokenizer(self.model_dir)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        base = load_embedder(self.model_dir).eval() if task == "embedding" else None
        self.served = Served(base, None)  # a classifier needs an adapter: its head is in it

    def _within_root(self, path: str) -> Path:
        try:
            candidate = (self.root / path).resolve()
        except (ValueError, OSError) as exc:  # a NUL byte, a loop of links
            raise ConfigError(f"The adapter path {path!r} is not a usable path ({exc}).") from None
        if not candidate.is_relative_to(self.root):
            raise ConfigError(
                f"The adapter path {path} is outside the adapters root {self.root}.",
                fix="Put the adapter under the root, or start the server with --adapters-root.",
            )
        return candidate

    def load_adapter(self, path: str, *, over_http: bool = True) -> Served:
        """Build, check and probe the adapter at `path`; the caller swaps it in only if this returns. A path
        sent over HTTP must lie under the adapters root; the one given on the command line need not."""
        folder = self._within_root(path) if over_http else Path(path).resolve()
        model = adapters.load(folder, self.model_dir, self.task)
        labels = list(model.config.id2label.values()) if self.task == "sequence-classification" else []
        with torch.no_grad():  # one forward pass: a broken adapter fails here, not on a user's request
            probe = self.tokenizer(["probe"], return_tensors="pt")
            out = model(**probe)
            values = out.logits if self.task == "sequence-classification" else out.last_hidden_state
            if not torch.isfinite(values).all():
                raise ConfigError(f"{folder} gives non-finite outputs on this base; it was not loaded.")
        return Served(model, str(folder), labels)

    def classify(self, served: Served, rows: list[LabeledText]) -> list[dict[str, Any]]:
        labels, probabilities = classifier_probabilities(served.model, self.tokenizer, rows, self.max_length)
        return [
            {"label": label, "scores": dict(zip(served.labels, p, strict=True))}
            for label, p in zip(labels, probabilities, strict=True)
        ]

    async def _run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.worker, function, *args)

    async def health(self, request: web.Request) -> web.Response:
        served = self.served
        return web.json_response(
            {"status": "ok", "task": self.task, "base": str(self.model_dir), "adapter": served.adapter}
        )

    async def load(self, request: web.Request) -> web.Response:
        body = await _body(request)
        path = body.get("adapter_path")
        if not isinstance(path, str) or not path:
            return _error('Send {"adapter_path": "path/to/adapter"}.')
        try:
            fresh = await self._run(self.load_adapter, path)
        except ConfigError as exc:
            return _error(exc.paragraph())
        previous, self.served = self.served.adapter, fresh
        return web.json_response({"loaded": fresh.adapter, "previous": previous, "labels": fresh.labels})

    async def classify_route(self, request: web.Request) -> web.Response:
        if self.task != "sequence-classification":
            return _error("This server embeds; it has no classifier.", 404)
        served = self.served
        if served.model is None:
            return _error("No adapter is loaded yet: POST /nli/adapter/load first.", 409)
        body = await _body(request)
        if isinstance(body.get("premise"), str) and isinstance(body.get("hypothesis"), str):
            row = LabeledText(body["premise"], body["hypothesis"], "")
        elif isinstance(body.get("text"), str):
            row = LabeledText(body["text"], None, "")
        else:
            return _error('Send {"premise": ..., "hypothesis": ...} or {"text": ...}.')
        (answer,) = await self._run(self.classify, served, [row])
        return web.json_response({**answer, "adapter": served.adapter})

    async def embed_route(self, request: web.Request) -> web.Response:
        if self.task != "embedding":
            return _error("This server classifies; it has no embedding route.", 404)
        body = await _body(request)
        texts = body.get("texts")
        if not (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)):
            return _error('Send {"texts": ["...", ...]}.')
        served = self.served
        vectors = await self._run(lambda: embed(served.model, self.tokenizer, texts, self.max_length).tolist())
        return web.json_response({"embeddings": vectors, "adapter": served.adapter})

    def app(self, allowed_hosts: set[str] | None = None) -> web.Application:
        """The routes. POSTs must be JSON (a web page cannot send that without a CORS preflight, so it cannot
        swap the adapter), and with `allowed_hosts` the Host header must be one of them (DNS rebinding)."""

        @web.middleware
        async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
            if allowed_hosts is not None and request.host not in allowed_hosts:
                return _error(f"Host {request.host!r} is not this server's address.", 403)
            if request.method == "POST" and request.content_type != "application/json":
                return _error("Send JSON, with the header Content-Type: application/json.", 415)
            return await handler(request)

        app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[guard])
        app.add_routes(
            [
                web.get("/health", self.health),
                web.post("/nli/adapter/load", self.load),
                web.post("/adapter/load", self.load),
                web.post("/nli/predict", self.classify_route),
                web.post("/classify", self.classify_route),
                web.post("/embed", self.embed_route),
            ]
        )
        return app


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def serve(server: EncoderServer, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Run until Ctrl-C. On a loopback address only requests addressed to it are answered."""
    allowed = {f"{name}:{port}" for name in LOOPBACK} if host in (*LOOPBACK, "::1") else None
    app = server.app(allowed)
    web.run_app(app, host=host, port=port, print=lambda text: print(text.replace("=", "").strip()))
