"""Load the base model for training: from a GGUF file (dequantised, then cached as safetensors) or a folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from loraforge.errors import ConfigError


def cache_root() -> Path:
    return Path(os.environ.get("LORAFORGE_CACHE", Path.home() / ".cache" / "loraforge"))


def _cache_key(path: Path) -> str:
    stat = path.stat()
    ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _build_cache(gguf_path: Path, target: Path) -> None:
    """Dequantise the GGUF once and save a plain safetensors folder that reloads in well under a second."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; rebuild the plain class from a clean config.
    config = model.config.__class__.from_dict(
        {k: v for k, v in model.config.to_dict().items() if k != "quantization_config"}
    )
    config.architectures = [type(model).__name__]
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict(), strict=False)
    plain.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "source.txt").write_text(str(gguf_path.resolve()) + "\n")
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def hf_folder_for(model_path: Path, *, progress: Any = None) -> Path:
    """A Hugging Face folder for `model_path`: the folder itself, or the cached copy of a GGUF file."""
    model_path = Path(model_path)
    if model_path.is_dir():
        if not (model_path / "config.json").is_file():  # the Hugging Face model config
            raise ConfigError(f"{model_path} has no config.json; it is not a Hugging Face model folder.")
        return model_path
    target = cache_root() / "base" / f"{model_path.stem}-{_cache_key(model_path)}"
    if not (target / "config.json").is_file():  # the Hugging Face model config
        if progress:
            progress(f"Converting {model_path.name} for training (once; cached in {target.parent})")
        _build_cache(model_path, target)
    return target


def quiet_transformers() -> None:
    """loraforge draws its own progress bars; the library's own bars and notices would tear them."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


def load_base_model(model_path: Path, *, dtype: Any = None, device: str = "cpu", progress: Any = None):
    """(model, tokenizer) ready for PEFT. Never runs remote code."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    folder = hf_folder_for(model_path, progress=progress)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype or torch.float32, trust_remote_code=False)
    model.to(device)  # type: ignore[arg-type]  # transformers' stub types .to() for PreTrainedModel only
    return model, tokenizer
