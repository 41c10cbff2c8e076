"""llama-cpp-python's OpenAI-compatible server as the engine (`--engine llama-cpp-python`).

It runs as a child process (`python -m loraforge.runtime.llama_cpp_python_cli`, which gives
`llama_cpp.server` loraforge's chat template and hands over to it), bound to 127.0.0.1 with a random API key
in a file only this user can read. Its limits, next to llama.cpp's own server (the default engine):
- one request at a time: no continuous batching, so no parallel slots and no slot pinning;
- an adapter is fixed when a model loads: each adapter is served as a model of its own (`adapter-0`, ...),
  and a request for another one reloads the model, so evaluation runs one model after the other;
- JSON-schema output in its own dialect (`response_format: {"type": "json_object", "schema": ...}`) and GBNF
  grammars on completions, but no `json_schema` field on completions: those answers are verified and retried;
- no native `/completion` route with token ids and log-probabilities: the export proof stays on the
  embedded llama.cpp server.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from loraforge.runtime.capabilities import Capabilities
from loraforge.runtime.config import ServerConfig
from loraforge.runtime.server import ChildProcessServer, wait_healthy

BASE_MODEL = "base"


def adapter_model(index: int) -> str:
    """The model id under which adapter number `index` is served."""
    return f"adapter-{index}"


def settings(config: ServerConfig, port: int, api_key: str, chat_format: str | None) -> dict[str, Any]:
    """The server's config file (llama_cpp.server's ConfigFileSettings): the base model, then each adapter
    as a model of its own, all with the same context and threads."""
    common = {
        "model": str(config.model_path),
        "n_ctx": max(256, config.n_ctx // config.n_parallel),  # one request at a time: one slot's context
        "n_threads": config.resolved_threads,
        "n_threads_batch": config.resolved_threads,
        "n_gpu_layers": -1,  # every layer on the GPU of a GPU build; a CPU build ignores it
        "logits_all": False,
        "cache": False,
        "chat_format": chat_format,
        "verbose": config.verbose,
    }
    models = [{**common, "model_alias": BASE_MODEL}]
    for index, path in enumerate(config.lora_adapters):
        models.append({**common, "model_alias": adapter_model(index), "lora_path": str(path)})
    return {"host": "127.0.0.1", "port": port, "api_key": api_key, "models": models}


class LlamaCppPythonServer(ChildProcessServer):
    """llama-cpp-python's server on the config's model and adapters, started and stopped by loraforge."""

    def __init__(self, config: ServerConfig, log_path: Any = None) -> None:
        super().__init__(config, log_path)
        self.capabilities = Capabilities(
            engine="llama-cpp-python",
            completions=True,
            response_format=True,
            model=BASE_MODEL,
            adapter_models=tuple(adapter_model(i) for i in range(len(config.lora_adapters))),
        )

    def command(self, port: int) -> list[str]:
        from loraforge.runtime.llama_cpp_python_cli import CHAT_FORMAT

        template = self.config.chat_template
        chat_format = CHAT_FORMAT if template else None  # else the template in the model file
        config = settings(self.config, port, self.api_key or "", chat_format)
        cmd = [sys.executable, "-m", "loraforge.runtime.llama_cpp_python_cli"]
        cmd += ["--config_file", str(self.private_file("server.json", json.dumps(config)))]
        if template:
            cmd += ["--chat-template-file", str(self.private_file("chat_template.jinja", template))]
        return cmd

    def wait_ready(self) -> None:
        # No /health route: the model list answers once the first model has loaded.
        wait_healthy(self.base_url, self.config.startup_timeout, self.alive, path="/v1/models", api_key=self.api_key)
