"""What loraforge needs to know from a base GGUF file's metadata."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from loraforge.errors import ConfigError


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    n_layers: int
    n_head: int
    n_kv_head: int
    chat_template: str | None
    add_bos: bool
    hidden_size: int = 0
    name: str = ""  # general.name, e.g. "SmolLM2 135M Instruct"
    head_dim: int = 0  # attention.key_length, else hidden_size // n_head; 0 when unknown
    ffn_size: int = 0  # feed_forward_length (the MLP's inner width); 0 when unknown


def _field(reader, key: str):
    import gguf

    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    if field.types and field.types[0] == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]].tolist()[0]


@lru_cache(maxsize=8)
def read_gguf_info(path: Path) -> GGUFInfo:
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError and others for damaged files
        raise ConfigError(f"{path} could not be read as GGUF: {exc}.") from None
    keys = gguf.Keys  # gguf-py's own key names, so that a renamed key shows up here as an AttributeError
    arch = _field(reader, keys.General.ARCHITECTURE)
    if not arch:
        raise ConfigError(f"{path} has no {keys.General.ARCHITECTURE} key; is it a model file?")
    n_head = _field(reader, keys.Attention.HEAD_COUNT.format(arch=arch)) or 0
    hidden = int(_field(reader, keys.LLM.EMBEDDING_LENGTH.format(arch=arch)) or 0)
    return GGUFInfo(
        architecture=arch,
        n_layers=int(_field(reader, keys.LLM.BLOCK_COUNT.format(arch=arch)) or 0),
        n_head=int(n_head),
        n_kv_head=int(_field(reader, keys.Attention.HEAD_COUNT_KV.format(arch=arch)) or n_head),
        chat_template=_field(reader, keys.Tokenizer.CHAT_TEMPLATE),
        add_bos=bool(_field(reader, keys.Tokenizer.ADD_BOS)),
        hidden_size=hidden,
        name=str(_field(reader, keys.General.NAME) or ""),
        head_dim=int(
            _field(reader, keys.Attention.KEY_LENGTH.format(arch=arch)) or (hidden // n_head if n_head else 0)
        ),
        ffn_size=int(_field(reader, keys.LLM.FEED_FORWARD_LENGTH.format(arch=arch)) or 0),
    )


def adapter_mismatch(adapter: Path, base: Path) -> str | None:
    """Why a GGUF LoRA adapter cannot apply to a base GGUF model, or None: another architecture, a layer
    the base lacks, or a tensor whose width differs from the base tensor it adapts."""
    import gguf

    try:
        lora, model = gguf.GGUFReader(str(adapter)), gguf.GGUFReader(str(base))
    except Exception as exc:  # gguf raises ValueError and others for damaged files
        return f"it could not be read as GGUF ({exc})"
    arch, base_arch = _field(lora, gguf.Keys.General.ARCHITECTURE), _field(model, gguf.Keys.General.ARCHITECTURE)
    if arch != base_arch:
        return f"it adapts a {arch} model, but the base is {base_arch}"
    widths = {t.name: [int(n) for n in t.shape] for t in model.tensors}  # shape: ne0 (inputs) first
    for tensor in lora.tensors:
        name, _, part = tensor.name.rpartition(".lora_")
        if part not in ("a", "b"):
            continue
        target = widths.get(name)
        if target is None:
            return f"it adapts {name}, which the base does not have"
        ne = [int(n) for n in tensor.shape]  # lora_a: (inputs, rank), lora_b: (rank, outputs)
        got, want, side = (ne[0], target[0], "inputs") if part == "a" else (ne[-1], target[-1], "outputs")
        if got != want:
            return f"its {tensor.name} has {got} {side}, but the base's {name} has {want}"
    return None
