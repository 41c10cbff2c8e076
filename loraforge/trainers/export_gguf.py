"""Write a PEFT LoRA adapter as a llama.cpp GGUF adapter.

Tensor names come from gguf's own name map for the base's architecture. For llama-family models,
llama.cpp stores the q and k projection rows permuted for its RoPE layout; since the permutation acts
on output rows, it is applied to lora_B of q_proj (with the head count) and of k_proj (with the KV head
count), never to lora_A. Forgetting it gives an adapter that loads and quietly produces garbage.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loraforge.constants import Artifact
from loraforge.errors import ConfigError
from loraforge.files import read_json_object
from loraforge.gguf_info import GGUFInfo

# Architectures whose converter permutes q/k rows (llama.cpp's LlamaModel and its subclasses; Mistral's
# models convert as "llama").
PERMUTED_QK_ARCHS = {"llama", "granite", "granitemoe"}
# Architectures whose projections convert without a permutation: their LoRA tensors map by name alone.
PLAIN_ARCHS = {"qwen2", "qwen3", "gemma3"}

_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<which>[AB])(?:\.default)?\.weight$")


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    tensors: int
    alpha: float
    rank: int


def permute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder output rows from the Hugging Face rotary layout to llama.cpp's interleaved one.

    Within each head, rows are split into two halves; llama.cpp wants them interleaved pairwise.
    """
    rows = weight.shape[0]
    head_dim = rows // n_head
    return weight.reshape(n_head, 2, head_dim // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def read_adapter(adapter_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(adapter_config, tensors) from a PEFT folder, with clear errors for what is missing."""
    from safetensors.numpy import load_file

    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise ConfigError(f"Adapter folder {adapter_dir} does not exist.")
    config_path = adapter_dir / Artifact.ADAPTER_CONFIG.value
    weights_path = adapter_dir / Artifact.ADAPTER_WEIGHTS.value
    if not config_path.is_file():
        raise ConfigError(f"{adapter_dir} has no adapter_config.json; it is not a PEFT adapter folder.")
    if not weights_path.is_file():
        raise ConfigError(f"{adapter_dir} has no adapter_model.safetensors (weights missing).")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path} is not valid JSON ({exc}).", fix="Re-save the adapter with PEFT.") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{config_path} must hold a JSON object, got {type(config).__name__}.")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ConfigError(f"{config_path}: 'r' (the LoRA rank) must be a positive integer, got {rank!r}.")
    if config.get("peft_type", "LORA") != "LORA":
        raise ConfigError(f"{adapter_dir} holds a {config.get('peft_type')} adapter; only LoRA can be exported.")
    for key, label in (("use_rslora", "rsLoRA"), ("use_dora", "DoRA")):
        if config.get(key):
            raise ConfigError(f"{adapter_dir} uses {label}, which a llama.cpp GGUF adapter cannot express.")
    if config.get("modules_to_save"):
        raise ConfigError(f"{adapter_dir} trains full modules ({config['modules_to_save']}); GGUF cannot hold them.")
    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise ConfigError(f"{weights_path} is not a readable safetensors file ({exc}).") from None
    check_tensors(tensors, rank, weights_path)
    return config, tensors


def check_tensors(tensors: dict[str, np.ndarray], rank: int, where: Path) -> None:
    """Every module has a 2-D lora_A [r, in] and lora_B [out, r] of the configured rank, and not all
    of them are zero where a trained adapter would have moved them."""
    if not tensors:
        raise ConfigError(f"{where} holds no tensors: the adapter is empty.")
    for key, value in tensors.items():
        match = _KEY.match(key)
        if not match:
            continue
        if value.ndim != 2:
            raise ConfigError(f"{where}: {key} has shape {list(value.shape)}; LoRA matrices are 2-D.")
        found = value.shape[0] if match["which"] == "A" else value.shape[1]
        if found != rank:
            raise ConfigError(
                f"{where}: {key} has rank {found}, but adapter_config.json says r={rank}.",
                fix="The weights and the config come from different adapters; save them together again.",
            )
    if all(not np.any(v) for k, v in tensors.items() if k.endswith("lora_A.weight")):
        raise ConfigError(f"{where}: every lora_A matrix is zero, so the adapter changes nothing.")
    if all(not np.any(v) for k, v in tensors.items() if k.endswith("lora_B.weight")):
        raise ConfigError(
            f"{where}: every lora_B matrix is zero, as PEFT starts them: the adapter was never trained and "
            "changes nothing.",
            fix="Train it first (loraforge train), or export the folder of a trained adapter.",
        )


def _add(writer, name: str, array: np.ndarray, outtype: str) -> None:
    """f32, f16, or q8_0 where rows hold whole 32-value blocks (a rank-16 lora_b does not: it stays f16)."""
    import gguf

    if outtype == "q8_0" and array.shape[-1] % 32 == 0:
        quantized = gguf.quants.quantize(array.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        return
    dtype = np.float32 if outtype == "f32" else np.float16
    writer.add_tensor(name, np.ascontiguousarray(array.astype(dtype)))


def export_adapter(
    adapter_dir: Path, base: GGUFInfo, out_path: Path, outtype: str = "f32", *, permute_qk: bool = True
) -> ExportSummary:
    """Convert the PEFT adapter in `adapter_dir` for the base described by `base`, into `out_path`.

    `permute_qk=False` exists only to prove that the fidelity check catches a missing permutation.
    """
    import gguf

    config, tensors = read_adapter(adapter_dir)
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ConfigError("Per-module ranks or alphas cannot be expressed in one GGUF adapter alpha.")
    if base.architecture not in PERMUTED_QK_ARCHS | PLAIN_ARCHS:
        raise ConfigError(
            f"loraforge does not export LoRA adapters for {base.architecture} models: it knows how llama.cpp lays "
            f"out the tensors of {', '.join(sorted(PERMUTED_QK_ARCHS | PLAIN_ARCHS))}.",
            fix="Use a base model of one of those architectures.",
        )
    arch = next((a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == base.architecture), None)
    if arch is None:
        raise ConfigError(f"The gguf package does not know the architecture {base.architecture!r}.")
    names = gguf.get_tensor_name_map(arch, base.n_layers)
    if outtype not in ("f32", "f16", "q8_0"):
        raise ConfigError(f"outtype must be 'f32', 'f16' or 'q8_0', got {outtype!r}.")

    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if not match:
            raise ConfigError(f"Unexpected tensor {key!r} in the adapter; only lora_A/lora_B are supported.")
        pairs.setdefault(match["module"], {})[match["which"]] = value

    tmp = out_path.with_name(f".{out_path.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), base.architecture)
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    invocation = config.get("alora_invocation_tokens")
    if invocation:
        # llama.cpp reads the invocation as an array of uint32 and refuses the adapter otherwise; add_array
        # would infer int32 from Python ints.
        writer.add_key_value(
            gguf.Keys.Adapter.ALORA_INVOCATION_TOKENS,
            [int(t) for t in invocation],
            gguf.GGUFValueType.ARRAY,
            sub_type=gguf.GGUFValueType.UINT32,
        )
    count = 0
    for module in sorted(pairs, key=_natural):
        pair = pairs[module]
        if set(pair) != {"A", "B"}:
            raise ConfigError(f"Module {module} has lora_{''.join(pair)} but not both A and B.")
        base_name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if base_name is None:
            raise ConfigError(f"No llama.cpp tensor corresponds to {module} for {base.architecture}.")
        lora_a, lora_b = pair["A"].astype(np.float32), pair["B"].astype(np.float32)
        if permute_qk and base.architecture in PERMUTED_QK_ARCHS:
            if module.endswith("q_proj"):
                lora_b = permute_rows(lora_b, base.n_head)
            elif module.endswith("k_proj"):
                lora_b = permute_rows(lora_b, base.n_kv_head)
        _add(writer, f"{base_name}.lora_a", lora_a, outtype)
        _add(writer, f"{base_name}.lora_b", lora_b, outtype)
        count += 2
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportSummary(path=out_path, tensors=count, alpha=alpha, rank=rank)


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _same_model_name(peft_name: str, gguf_name: str) -> bool:
    """PEFT records a Hugging Face id or path ("HuggingFaceTB/SmolLM2-135M-Instruct"), GGUF a display
    name ("SmolLM2 135M Instruct"). Unknown on either side counts as the same."""

    def key(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.rstrip("/").rsplit("/", 1)[-1].lower())

    a, b = key(peft_name), key(gguf_name)
    return not a or not b or a in b or b in a


def expected_sizes(base: GGUFInfo) -> dict[tuple[str, str], int]:
    """The size each LoRA matrix must have on its free side, per (module, "A"|"B"): A's input and B's output
    width of each projection, from the base's header. Sizes the header does not give are left out."""
    hidden, heads = base.hidden_size, base.n_head * base.head_dim
    kv, ffn = base.n_kv_head * base.head_dim, base.ffn_size
    sizes = {
        **{(m, "A"): hidden for m in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")},
        ("o_proj", "B"): hidden,
        ("down_proj", "B"): hidden,
        ("q_proj", "B"): heads,
        ("o_proj", "A"): heads,
        ("k_proj", "B"): kv,
        ("v_proj", "B"): kv,
        ("gate_proj", "B"): ffn,
        ("up_proj", "B"): ffn,
        ("down_proj", "A"): ffn,
    }
    return {key: size for key, size in sizes.items() if size}


def check_adapter_matches_base(adapter_dir: Path, base: GGUFInfo, base_path: Path | None = None) -> list[str]:
    """Refuse an adapter trained for another model: architecture, layer count and hidden size must fit.
    Returns warnings: a base file other than the one the adapter records, with shapes that fit."""
    config, tensors = read_adapter(adapter_dir)
    meta = read_json_object(Path(adapter_dir) / Artifact.ADAPTER_META.value)
    warnings = []
    if meta:
        arch = meta.get("architecture")
        if arch and arch != base.architecture:
            raise ConfigError(f"{adapter_dir} was trained for a {arch} model, but the base is {base.architecture}.")
        recorded = meta.get("base_model")
        if (
            isinstance(recorded, str)
            and recorded
            and base_path is not None
            and Path(recorded).name != Path(base_path).name
        ):
            warnings.append(
                f"{adapter_dir} was trained on {Path(recorded).name}, but the base given is {Path(base_path).name}; "
                "the shapes fit, so the export goes on. If this is not the same model, the adapter will not work."
            )
    elif not _same_model_name(str(config.get("base_model_name_or_path") or ""), base.name):
        warnings.append(
            f"{adapter_dir} was made for {config['base_model_name_or_path']}, but the base is {base.name}; the "
            "shapes fit, so the export goes on. If this is not the same model, the adapter will not work."
        )
    for key, value in tensors.items():
        match = _KEY.match(key)
        layer = re.search(r"layers\.(\d+)\.", key)
        if layer and int(layer.group(1)) >= base.n_layers:
            raise ConfigError(
                f"{adapter_dir} adapts layer {layer.group(1)}, but the base has {base.n_layers} layers.",
                fix="Use the base model the adapter was trained on (--base).",
            )
        if match:
            axis = 0 if match["which"] == "B" else 1  # B is [out, r], A is [r, in]
            module = match["module"].split(".")[-1]
            want = expected_sizes(base).get((module, match["which"]))
            if want and value.shape[axis] != want:
                side = "outputs" if axis == 0 else "inputs"
                raise ConfigError(
                    f"{adapter_dir}: {key} has {value.shape[axis]} {side}, but the base's {module} has {want}.",
                    fix="Use the base model the adapter was trained on (--base).",
                )
    return warnings
