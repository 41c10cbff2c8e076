"""The preflight: every check returns a small result with a status and a one-line fix."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from loraforge.errors import ConfigError, LoraforgeError

if TYPE_CHECKING:
    from loraforge.runtime.config import Engine

Status = Literal["ok", "warn", "fail"]

# (import name, distribution name) of what `loraforge run` needs.
REQUIRED = [
    ("torch", "torch"),
    ("transformers", "transformers"),
    ("peft", "peft"),
    ("gguf", "gguf"),
    ("safetensors", "safetensors"),
    ("numpy", "numpy"),
    ("aiohttp", "aiohttp"),
    ("jsonschema", "jsonschema"),
    ("tqdm", "tqdm"),
    ("psutil", "psutil"),
    ("yaml", "pyyaml"),
    ("jinja2", "jinja2"),
]


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def check_python() -> CheckResult:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 10):  # noqa: UP036 -- the preflight may run under any interpreter
        return CheckResult("python", "fail", f"Python {version}", "Use Python 3.10 or newer.")
    return CheckResult("python", "ok", f"Python {version} at {sys.executable}")


def check_package(module: str, dist: str) -> CheckResult:
    name = f"package {dist}"
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return CheckResult(name, "fail", "not installed", f"pip install {dist}  (or run `make setup`)")
    try:
        importlib.import_module(module)
    except Exception as exc:  # a broken install raises anything at import
        return CheckResult(
            name, "fail", f"{version} installed but does not import: {exc}", f"pip install --force-reinstall {dist}"
        )
    return CheckResult(name, "ok", version)


def check_torch() -> CheckResult:
    try:
        import torch
    except Exception as exc:
        return CheckResult("torch device", "fail", f"torch does not import: {exc}", "pip install torch")
    build = f"torch {torch.__version__}"
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
        return CheckResult(
            "torch device",
            "ok",
            f"{build}, CUDA {torch.version.cuda}: {name}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free",
        )
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return CheckResult("torch device", "ok", f"{build}, Apple MPS available")
    cuda = "CUDA build, but no GPU is visible" if torch.version.cuda else "CPU build"
    return CheckResult("torch device", "ok", f"{build} ({cuda}); training runs on {os.cpu_count()} CPU cores")


def check_bitsandbytes() -> CheckResult:
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:
        cuda = False
    try:
        version = importlib.metadata.version("bitsandbytes")
    except importlib.metadata.PackageNotFoundError:
        if cuda:
            return CheckResult(
                "bitsandbytes", "warn", "not installed; QLoRA is unavailable", "pip install bitsandbytes"
            )
        return CheckResult("bitsandbytes", "ok", "not needed without CUDA (QLoRA needs a GPU)")
    return CheckResult("bitsandbytes", "ok", version)


def check_encoder() -> CheckResult:
    """The packaged encoder of `--model-kind encoder`, `train --task` and `serve-encoder`; optional."""
    from loraforge.encoders.model import INSTALL, MINILM, MINILM_PACKAGE

    try:
        version = importlib.metadata.version(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return CheckResult(
            "encoder",
            "warn",
            f"{MINILM_PACKAGE} is not installed; encoder adapters need it or a Hugging Face encoder folder",
            f"{INSTALL} (or `make setup-encoders`), only if you train encoder adapters",
        )
    return CheckResult("encoder", "ok", f"{MINILM} ({MINILM_PACKAGE} {version})")


def check_ram() -> CheckResult:
    import psutil

    mem = psutil.virtual_memory()
    detail = f"{mem.available / 2**30:.1f} GiB available of {mem.total / 2**30:.1f} GiB"
    if mem.available < 2 * 2**30:
        return CheckResult("ram", "fail", detail, "Free memory: the default model needs about 2 GiB to train.")
    if mem.available < 4 * 2**30:
        return CheckResult("ram", "warn", detail, "Close other programs; larger models need more memory.")
    return CheckResult("ram", "ok", detail)


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def check_disk(out: Path) -> CheckResult:
    usage = shutil.disk_usage(_existing_parent(out))
    detail = f"{usage.free / 2**30:.1f} GiB free at {_existing_parent(out)}"
    if usage.free < 1 * 2**30:
        return CheckResult("disk", "fail", detail, "Free at least 1 GiB, or choose another --out folder.")
    if usage.free < 5 * 2**30:
        return CheckResult("disk", "warn", detail, "A run with several iterations can use a few GiB.")
    return CheckResult("disk", "ok", detail)


def check_engine(llama_server: Path | None, engine: Engine = "xllamacpp") -> CheckResult:
    if engine == "llama-cpp-python" and llama_server is None:
        return check_llama_cpp_python()
    binary = llama_server or (Path(os.environ["LLAMA_CPP_PATH"]) if os.environ.get("LLAMA_CPP_PATH") else None)
    if binary is not None:
        from loraforge.runtime.config import find_llama_server
        from loraforge.runtime.server import llama_server_version

        try:
            found = find_llama_server(binary)
            version = llama_server_version(found)
        except LoraforgeError as exc:
            return CheckResult("llama.cpp engine", "fail", str(exc), exc.fix or "")
        except Exception as exc:
            return CheckResult(
                "llama.cpp engine",
                "fail",
                f"{binary} --version failed: {exc}",
                "Point --llama-server at a working llama-server binary.",
            )
        return CheckResult("llama.cpp engine", "ok", f"{found}: {version}")
    return check_binding(
        "xllamacpp",
        "xllamacpp",
        "xllamacpp unavailable",
        "pip install xllamacpp, or pass --llama-server PATH to a llama-server binary.",
        "embedded server (xllamacpp {version})",
    )


def check_llama_cpp_python() -> CheckResult:
    """--engine llama-cpp-python: the binding with its server extra, importable."""
    return check_binding(
        "llama-cpp-python",
        "llama_cpp.server.app",
        "llama-cpp-python's server is unavailable",
        "pip install 'loraforge[llama-cpp-python]' (pip compiles llama.cpp once), "
        "or leave out --engine to use the embedded server.",
        "llama-cpp-python {version} server (one request at a time)",
    )


def check_binding(distribution: str, module: str, missing: str, fix: str, found: str) -> CheckResult:
    """A llama.cpp binding: installed (its version goes into `found`) and importable."""
    try:
        version = importlib.metadata.version(distribution)
        importlib.import_module(module)
    except Exception as exc:
        return CheckResult("llama.cpp engine", "fail", f"{missing} ({exc})", fix)
    return CheckResult("llama.cpp engine", "ok", found.format(version=version))


def check_model(model: Path | None) -> CheckResult:
    from loraforge.models import DEFAULT_MODEL_PACKAGE, default_model_path, is_gguf
    from loraforge.models.paths import packaged_model, packaged_name

    name = packaged_name(model) if model is not None else None
    if name:
        try:
            model = packaged_model(name)
        except ConfigError as exc:
            return CheckResult("model", "fail", str(exc), exc.fix or "")
    path = model or default_model_path()
    if path is None:
        return CheckResult(
            "model",
            "fail",
            f"no --model given and {DEFAULT_MODEL_PACKAGE} is not installed",
            f"pip install --no-deps {DEFAULT_MODEL_PACKAGE}, or pass --model PATH to a GGUF file.",
        )
    path = Path(path).expanduser()
    if not path.exists():
        return CheckResult("model", "fail", f"{path} does not exist", "Pass --model PATH to an existing GGUF file.")
    if not path.is_file():
        return CheckResult("model", "fail", f"{path} is not a file", "Pass --model PATH to a .gguf file.")
    if not os.access(path, os.R_OK):
        return CheckResult("model", "fail", f"{path} is not readable", f"chmod a+r {path}")
    if not is_gguf(path):
        return CheckResult(
            "model",
            "fail",
            f"{path} is not a GGUF file (no GGUF magic bytes)",
            "Convert it with llama.cpp's convert_hf_to_gguf.py, or pass a .gguf file.",
        )
    try:
        import gguf

        reader = gguf.GGUFReader(str(path))  # header, metadata and tensor table, memory-mapped
        tensors = len(reader.tensors)
    except Exception as exc:  # the reader raises ValueError, struct.error, IndexError ... on a damaged file
        return CheckResult(
            "model",
            "fail",
            f"{path} starts like a GGUF file but cannot be read ({type(exc).__name__}: {str(exc)[:120]})",
            "The file is damaged or cut short; download or convert it again.",
        )
    if not tensors:
        return CheckResult("model", "fail", f"{path} holds no tensors", "Pass a GGUF model file, not an adapter.")
    size = path.stat().st_size / 2**20
    return CheckResult("model", "ok", f"{path} ({size:.0f} MiB, GGUF, {tensors} tensors)")


def check_output(out: Path) -> CheckResult:
    """Can a run write `out`? Tested in the folder itself, or in its nearest existing parent, so that
    checking creates nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        return CheckResult("output folder", "fail", f"{out} is a file", "Choose another --out folder.")
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write-test-"):
            pass
    except OSError as exc:
        return CheckResult(
            "output folder",
            "fail",
            f"{out} is not writable: {exc.strerror}",
            "Choose another --out folder, or fix its permissions.",
        )
    return CheckResult("output folder", "ok", f"{out.resolve()} is writable")


def check_deep(model: Path | None, llama_server: Path | None, engine: Engine = "xllamacpp") -> CheckResult:
    """Start the server and run one short completion."""
    import asyncio

    from loraforge.models import resolve_model
    from loraforge.runtime import ServerConfig, make_server

    async def probe() -> str:
        config = ServerConfig(
            model_path=resolve_model(model),
            llama_server=llama_server,
            engine=engine,
            n_parallel=1,
            n_ctx=512,
        )
        async with make_server(config) as server:
            async with server.client(concurrency=1) as client:
                start = time.perf_counter()
                text = await client.complete("The capital of France is", max_tokens=8, temperature=0.0)
                return f"answered {text.strip()[:40]!r} in {time.perf_counter() - start:.2f} s"

    try:
        return CheckResult("server round trip", "ok", asyncio.run(probe()))
    except LoraforgeError as exc:
        return CheckResult("server round trip", "fail", str(exc), exc.fix or "Run with --verbose for the server log.")
    except Exception as exc:
        return CheckResult(
            "server round trip",
            "fail",
            f"{type(exc).__name__}: {exc}",
            "Run `loraforge check` without --deep first and fix what fails.",
        )


def run_checks(
    model: Path | None,
    out: Path,
    llama_server: Path | None = None,
    deep: bool = False,
    on_result: Callable[[CheckResult], None] | None = None,
    engine: Engine = "xllamacpp",
) -> list[CheckResult]:
    checks: list[Callable[[], CheckResult]] = [check_python]
    checks += [functools.partial(check_package, m, d) for m, d in REQUIRED]
    checks += [
        check_torch,
        check_bitsandbytes,
        check_encoder,
        check_ram,
        lambda: check_disk(out),
        lambda: check_engine(llama_server, engine),
        lambda: check_model(model),
        lambda: check_output(out),
    ]
    results = []
    for check in checks:
        result = check()
        results.append(result)
        if on_result:
            on_result(result)
    if deep:
        ready = all(r.status != "fail" for r in results if r.name in ("model", "llama.cpp engine"))
        result = (
            check_deep(model, llama_server, engine)
            if ready
            else CheckResult(
                "server round trip", "fail", "skipped: the model or the engine check failed", "Fix those first."
            )
        )
        results.append(result)
        if on_result:
            on_result(result)
    return results
