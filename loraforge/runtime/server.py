"""The llama.cpp server's lifecycle: start it bound to 127.0.0.1, wait for /health, always stop it."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from loraforge.constants import Artifact
from loraforge.errors import ServerError
from loraforge.runtime.capabilities import LLAMA_CPP, Capabilities
from loraforge.runtime.client import LlamaClient
from loraforge.runtime.config import ServerConfig

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_taken(port: int) -> bool:
    """Whether another process holds `port` on 127.0.0.1 (it may have taken it since `free_port`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
        return False


# A port is picked by binding port 0 and closing the socket; another process can take it before the
# server binds it. Start-up is retried on a fresh port this many times when that happened.
PORT_ATTEMPTS = 3


def on_free_port(start_on: Callable[[int], T]) -> T:
    """`start_on(port)` on a free port, again on a fresh one if the port was taken meanwhile."""
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        try:
            return start_on(port)
        except ServerError:
            if attempt + 1 == PORT_ATTEMPTS or not port_taken(port):
                raise
    raise AssertionError("unreachable")


OWN_SERVER_FIX = "Check the model file with `loraforge check --deep`."
OUTSIDE_SERVER_FIX = "Check that the server at that URL is running (`curl URL/health`) and that --server-url is right."


def wait_healthy(
    base_url: str,
    timeout: float,
    is_alive=lambda: True,
    fix: str = OWN_SERVER_FIX,
    path: str = "/health",
    api_key: str | None = None,
) -> None:
    """Poll `path` (llama.cpp's /health) until it answers 200, the process dies, or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    last = "no answer"
    while time.monotonic() < deadline:
        if not is_alive():
            raise ServerError(
                f"The llama.cpp server exited during start-up ({last}).",
                fix="Its own messages are in server.log in the run folder (or run it by hand to see them); " + fix,
            )
        try:
            with urllib.request.urlopen(urllib.request.Request(base_url + path, headers=headers), timeout=5) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"{path} answered {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise ServerError(
        f"The llama.cpp server at {base_url} did not become healthy within {timeout:.0f} s ({last}).",
        fix=fix,
    )


def wait_answering(url: str, timeout: float, api_key: str | None) -> None:
    """Poll `url` (an OpenAI route) until it answers 200, or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"answered {exc.code}"
            if exc.code in (401, 403):
                raise ServerError(
                    f"The server at {url} refused loraforge's requests ({exc.code}).",
                    fix=f"Put its API key in the environment variable {API_KEY_VARIABLE}.",
                ) from None
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise ServerError(f"The server at {url} did not answer within {timeout:.0f} s ({last}).", fix=OUTSIDE_SERVER_FIX)


class LlamaServer:
    """A server that loraforge owns or borrows. Use as a (async) context manager; stopping twice is safe."""

    base_url: str = ""
    api_key: str | None = None  # servers loraforge starts take a random key that only its clients know
    capabilities: Capabilities = LLAMA_CPP  # how requests address it; a server behind a URL is probed instead

    def client(self, **options: Any) -> LlamaClient:
        """A client for this server (not yet entered): its address, key and capabilities, and `options`."""
        options.setdefault("capabilities", self.capabilities)
        return LlamaClient(self.base_url, api_key=self.api_key, **options)

    def start(self) -> LlamaServer:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        return True

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def __aenter__(self) -> LlamaServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url or 'stopped'}>"


class EmbeddedServer(LlamaServer):
    """llama.cpp's native server, in this process, through the xllamacpp wheel."""

    def __init__(self, config: ServerConfig) -> None:
        if config.model_path is None:
            raise ServerError("The embedded server needs a model path.")
        self.config = config
        self.api_key = secrets.token_urlsafe(24)
        self._server: Any = None

    def start(self) -> EmbeddedServer:
        if self._server is not None:
            return self
        return on_free_port(self._start_on)

    def _start_on(self, port: int) -> EmbeddedServer:
        import xllamacpp

        cfg = self.config
        params = xllamacpp.CommonParams()
        params.model.path = str(cfg.model_path)
        params.n_ctx = cfg.n_ctx
        params.n_parallel = cfg.n_parallel
        params.cpuparams.n_threads = cfg.resolved_threads
        params.cpuparams_batch.n_threads = cfg.resolved_threads
        params.hostnames = ["127.0.0.1"]
        params.port = port
        params.api_keys = [self.api_key]
        # The RAM prompt cache corrupts outputs when requests switch adapter scales (measured); keep it off.
        params.cache_ram_mib = 0
        params.use_jinja = True
        params.verbosity = 3 if cfg.verbose else 0
        if cfg.chat_template:
            params.chat_template = cfg.chat_template
        if cfg.lora_adapters:
            adapters = []
            for path in cfg.lora_adapters:
                info = xllamacpp.CommonAdapterLoraInfo(str(path), 0.0)
                adapters.append(info)
            params.lora_adapters = adapters
            params.lora_init_without_apply = True
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # the binding raises plain exceptions for load failures
            raise ServerError(
                f"llama.cpp could not load {cfg.model_path}: {exc}.",
                fix="Run `loraforge check --model PATH --deep` to diagnose the model file.",
            ) from None
        address = self._server.listening_address
        self.base_url = address if address.startswith("http") else f"http://{address}"
        try:
            wait_healthy(self.base_url, self.config.startup_timeout)
        except BaseException:
            self.stop()  # a retry on another port must not leave this one serving in the process
            raise
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        del server
        gc.collect()
        self.base_url = ""

    def alive(self) -> bool:
        return self._server is not None


class ChildProcessServer(LlamaServer):
    """A server that loraforge starts as a child process on a free port, and stops. Subclasses say how to
    start it (`command`) and how to tell that it is ready (`wait_ready`)."""

    def __init__(self, config: ServerConfig, log_path: Path | None = None) -> None:
        if config.model_path is None:
            raise ServerError("A server that loraforge starts needs a model path.")
        self.config = config
        self.log_path = log_path
        self.api_key = secrets.token_urlsafe(24)
        self._proc: subprocess.Popen | None = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def wait_ready(self) -> None:
        wait_healthy(self.base_url, self.config.startup_timeout, self.alive)

    def private_file(self, name: str, text: str) -> Path:
        """`text` in a file of this server's temporary folder that only this user can read."""
        assert self._tmpdir is not None
        path = Path(self._tmpdir.name) / name
        path.touch(mode=0o600)
        path.write_text(text, encoding="utf-8")
        return path

    def start(self) -> ChildProcessServer:
        if self._proc is not None:
            return self
        return on_free_port(self._start_on)

    def _start_on(self, port: int) -> ChildProcessServer:
        self._tmpdir = tempfile.TemporaryDirectory(prefix="loraforge-server-")
        log = open(self.log_path, "ab") if self.log_path else None
        try:
            out = log if log is not None else subprocess.DEVNULL
            command = self.command(port)
            self._proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise ServerError(f"Could not run {command[0]}: {exc}.") from None
        finally:
            if log is not None:
                log.close()
        self.base_url = f"http://127.0.0.1:{port}"
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        self.base_url = ""

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


class BinaryServer(ChildProcessServer):
    """A llama-server executable that loraforge starts as a child process and stops."""

    def __init__(self, config: ServerConfig, log_path: Path | None = None) -> None:
        if config.model_path is None or config.llama_server is None:
            raise ServerError("A llama-server binary and a model path are both needed.")
        super().__init__(config, log_path)

    def command(self, port: int) -> list[str]:
        cfg = self.config
        cmd = [
            str(cfg.llama_server),
            "-m",
            str(cfg.model_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-c",
            str(cfg.n_ctx),
            "-np",
            str(cfg.n_parallel),
            "-t",
            str(cfg.resolved_threads),
            "--cache-ram",
            "0",
            "--jinja",
        ]
        # The key goes in a file only this user can read: a command line is visible to every local user.
        cmd += ["--api-key-file", str(self.private_file("api_key", self.api_key or ""))]
        if cfg.chat_template:
            cmd += ["--chat-template-file", str(self.private_file(Artifact.CHAT_TEMPLATE.value, cfg.chat_template))]
        for path in cfg.lora_adapters:
            cmd += ["--lora", str(path)]
        if cfg.lora_adapters:
            cmd.append("--lora-init-without-apply")
        return cmd


# The environment variable that holds the API key of a server behind --server-url (never written anywhere).
API_KEY_VARIABLE = "LORAFORGE_API_KEY"


class ExternalServer(LlamaServer):
    """A server the user runs (llama.cpp's, or any OpenAI-compatible one); loraforge only checks that it
    answers, on /health or on OpenAI's /v1/models. Its API key, if it needs one, comes from
    LORAFORGE_API_KEY."""

    def __init__(self, url: str, startup_timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.startup_timeout = startup_timeout
        self.api_key = os.environ.get(API_KEY_VARIABLE) or None

    def start(self) -> ExternalServer:
        self.base_url = self.url
        if _health_status(self.base_url) in (200, 503):  # llama.cpp's /health: ready, or still loading
            wait_healthy(self.base_url, self.startup_timeout, fix=OUTSIDE_SERVER_FIX)
        else:  # a server without /health (a hosted API, Ollama): OpenAI's model list must answer
            wait_answering(self.base_url + "/v1/models", self.startup_timeout, self.api_key)
        return self

    def stop(self) -> None:
        self.base_url = ""


def _health_status(base_url: str) -> int | None:
    """What GET /health answers right now (None: nothing answers)."""
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def make_server(config: ServerConfig, log_path: Path | None = None) -> LlamaServer:
    """Pick the server kind from the config: a URL, a binary, llama-cpp-python, or the embedded default."""
    if config.server_url:
        return ExternalServer(config.server_url)
    if config.llama_server:
        return BinaryServer(config, log_path)
    if config.engine == "llama-cpp-python":
        from loraforge.runtime.llama_cpp_python import LlamaCppPythonServer

        return LlamaCppPythonServer(config, log_path)
    return EmbeddedServer(config)


def llama_server_version(binary: Path) -> str:
    """What `llama-server --version` prints, for the preflight."""
    found = shutil.which(str(binary)) or str(binary)
    result = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30)
    text = (result.stdout + result.stderr).strip().splitlines()
    return next((line for line in text if "version" in line.lower()), text[-1] if text else "unknown")
