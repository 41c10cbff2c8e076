"""How loraforge reaches llama.cpp: an embedded server, a llama-server binary, or a running server."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from loraforge.errors import ConfigError

# The llama.cpp bindings that can serve a server loraforge starts.
Engine = Literal["xllamacpp", "llama-cpp-python"]
ENGINES: tuple[str, ...] = get_args(Engine)


@dataclass
class ServerConfig:
    """Settings for one llama.cpp server. The embedded xllamacpp server is the default and needs none."""

    model_path: Path | None = field(
        default=None, metadata={"help": "GGUF model the server loads, e.g. models/smollm2.gguf."}
    )
    server_url: str | None = field(
        default=None,
        metadata={"help": "Use a llama-server that already runs, e.g. http://127.0.0.1:8080; nothing is started."},
    )
    llama_server: Path | None = field(
        default=None,
        metadata={"help": "Start this llama-server binary instead of the embedded server ($LLAMA_CPP_PATH too)."},
    )
    engine: Engine = field(
        default="xllamacpp",
        metadata={
            "help": "The llama.cpp binding that serves the model when loraforge starts the server: 'xllamacpp' "
            "(llama.cpp's own server, in process; the default) or 'llama-cpp-python' (its OpenAI-compatible "
            "server as a child process; pip install 'loraforge[llama-cpp-python]'). llama-cpp-python serves "
            "one request at a time and loads each adapter as a model of its own."
        },
    )
    chat_template: str | None = field(
        default=None, metadata={"help": "Jinja chat template text the server renders prompts with."}
    )
    lora_adapters: list[Path] = field(
        default_factory=list,
        metadata={"help": "GGUF adapters to load at start, with scale 0; requests choose them by index."},
    )
    n_ctx: int = field(default=4096, metadata={"help": "Total context, split across the parallel slots."})
    n_parallel: int = field(default=4, metadata={"help": "Parallel request slots (continuous batching)."})
    threads: int = field(default=0, metadata={"help": "CPU threads for the server; 0 means all cores."})
    startup_timeout: float = field(default=120.0, metadata={"help": "Seconds to wait for /health at start."})
    verbose: bool = field(default=False, metadata={"help": "Let llama.cpp print its own log."})

    def __post_init__(self) -> None:
        if self.model_path is not None:
            self.model_path = Path(self.model_path)
        if self.llama_server is None and os.environ.get("LLAMA_CPP_PATH"):
            self.llama_server = find_llama_server(Path(os.environ["LLAMA_CPP_PATH"]))
        if self.engine not in ENGINES:
            raise ConfigError(f"Unknown engine {self.engine!r}.", fix=f"Choose one of: {', '.join(ENGINES)}.")
        if self.n_parallel < 1:
            raise ConfigError(f"n_parallel must be at least 1, got {self.n_parallel}.")
        if self.n_ctx < 256:
            raise ConfigError(f"n_ctx must be at least 256, got {self.n_ctx}.")

    @property
    def resolved_threads(self) -> int:
        return self.threads if self.threads > 0 else (os.cpu_count() or 1)


def find_llama_server(path: Path) -> Path:
    """Accept the binary itself or a llama.cpp folder that holds it (build/bin, bin or the top)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    for candidate in (path / "build" / "bin" / "llama-server", path / "bin" / "llama-server", path / "llama-server"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"No llama-server binary found at {path}.",
        fix="Point --llama-server or $LLAMA_CPP_PATH at the binary or at a llama.cpp build folder.",
    )


def context_for(rows: list[dict[str, Any]], answer_tokens: int) -> int:
    """Context per slot for evaluating these rows: the longest row (tools, messages) plus the answer, from
    its size in characters (about 2.5 per token for JSON-heavy prompts), in steps of 1024 from 2048."""
    longest = max((len(json.dumps(row, ensure_ascii=False)) for row in rows), default=0)
    need = int(longest / 2.5) + answer_tokens + 256
    return max(2048, min(32768, -(-need // 1024) * 1024))
