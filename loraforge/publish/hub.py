"""The Hugging Face Hub: the folder an adapter is published as, and its upload.

The folder holds the PEFT files, the GGUF adapter, the chat template, loraforge's record and the
metrics, and a model card with the Hub's YAML metadata (`huggingface_hub.ModelCard`). Local paths never
leave the machine: the base model is named by its Hub ID where loraforge knows it (or the user gives it),
else by its file name. Nothing is uploaded before the user has seen the files and a sample of the
training data (the privacy step); `upload.json` is written beside the adapter only once the Hub has
accepted the commit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from loraforge.constants import ALL_METRICS, Artifact
from loraforge.errors import ConfigError, LoraforgeError
from loraforge.files import atomic_write_json, atomic_write_text, read_json_object, read_jsonl

# The Hub IDs of base models that loraforge ships or names, by the start of their GGUF file name.
KNOWN_HUB_IDS = {"SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct", "gemma-3-270m": "google/gemma-3-270m"}
PUBLISHED = (
    Artifact.ADAPTER_WEIGHTS,
    Artifact.ADAPTER_CONFIG,
    Artifact.ADAPTER_GGUF,
    Artifact.CHAT_TEMPLATE,
    Artifact.ADAPTER_META,
    Artifact.METRICS,
    Artifact.EXPORT_REPORT,
)
UPLOAD_RECORD = "upload.json"


def base_model_id(adapter_dir: Path, given: str | None = None) -> str | None:
    """The base model's Hub ID: the one given, else the known ID of the GGUF the adapter was trained on."""
    if given:
        return given
    recorded = str(read_json_object(adapter_dir / Artifact.ADAPTER_META.value).get("base_model") or "")
    name = Path(recorded).name
    return next((hub_id for start, hub_id in KNOWN_HUB_IDS.items() if name.startswith(start)), None)


IO_YAML = "io.yaml"


def read_io_yaml(path: Path) -> str:
    """A Mellea intrinsic's io.yaml (how the intrinsic's input and output are shaped), checked to be a YAML
    mapping; its text, as it will be published."""
    from loraforge.files import read_user_text
    from loraforge.yaml_safe import parse_user_yaml

    fix = "Pass the intrinsic's io.yaml: a YAML mapping (see Mellea's intrinsics documentation)."
    if not Path(path).is_file():
        raise ConfigError(f"--io-yaml {path}: no such file.", fix=fix)
    text = read_user_text(path, fix)
    data = parse_user_yaml(text, path, fix, "an io.yaml")
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"--io-yaml {path}: holds {type(data).__name__}, not a mapping of settings.", fix=fix)
    return text


def stage(adapter_dir: Path, out: Path, base_id: str | None, io_yaml: str | None = None) -> list[Path]:
    """Write the folder to publish into `out` (which must not exist yet); the files written. With `io_yaml`
    (the text of an intrinsic's io.yaml) the folder is a Mellea intrinsic: io.yaml beside the adapter."""
    adapter_dir = Path(adapter_dir)
    for needed in (Artifact.ADAPTER_WEIGHTS, Artifact.ADAPTER_CONFIG, Artifact.ADAPTER_GGUF):
        if not (adapter_dir / needed.value).is_file():
            raise ConfigError(
                f"{adapter_dir} has no {needed.value}.",
                fix=f"Publish an exported adapter (a run's final_adapter/, or `loraforge export {adapter_dir}` first).",
            )
    out.mkdir(parents=True)
    for artifact in PUBLISHED:
        if (adapter_dir / artifact.value).is_file():
            shutil.copyfile(adapter_dir / artifact.value, out / artifact.value)
    meta = read_json_object(adapter_dir / Artifact.ADAPTER_META.value)
    base_name = base_id or Path(str(meta.get("base_model") or "unknown")).name
    config = json.loads((out / Artifact.ADAPTER_CONFIG.value).read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_name  # not a folder in the publisher's cache
    atomic_write_json(out / Artifact.ADAPTER_CONFIG.value, config)
    if meta:
        atomic_write_json(out / Artifact.ADAPTER_META.value, {**meta, "base_model": base_name})
    if io_yaml is not None:
        atomic_write_text(out / IO_YAML, io_yaml)
    card = model_card(adapter_dir, base_id, base_name, intrinsic=io_yaml is not None)
    atomic_write_text(out / Artifact.MODEL_CARD.value, card)
    return sorted(out.iterdir())


def model_card(adapter_dir: Path, base_id: str | None, base_name: str, intrinsic: bool = False) -> str:
    """The model card: Hub metadata (base model, library, tags, metrics) and what the adapter does."""
    from huggingface_hub import ModelCard, ModelCardData

    meta = read_json_object(adapter_dir / Artifact.ADAPTER_META.value)
    metrics = read_json_object(adapter_dir / Artifact.METRICS.value)
    adapter = metrics.get("adapter") or {}
    scores = {k: round(float(adapter[k]), 4) for k in ALL_METRICS if isinstance(adapter.get(k), (int, float))}
    data = ModelCardData(
        base_model=base_id,
        library_name="peft",
        pipeline_tag="text-generation",
        tags=["loraforge", "lora", "gguf", "tool-calling" if meta.get("tools") else "text-classification"]
        + (["intrinsic"] if intrinsic else []),
    )
    lines = [
        f"# LoRA adapter for {base_name}",
        "",
        "Trained by loraforge on synthetic data verified before use, and exported to GGUF "
        "for llama.cpp (`adapter.gguf`) beside the PEFT files.",
        "",
    ]
    if meta.get("tools"):
        lines.append("Tools: " + ", ".join(t["function"]["name"] for t in meta["tools"]))
    if meta.get("labels"):
        lines.append("Labels: " + ", ".join(meta["labels"]))
    if scores:
        base = metrics.get("base") or {}
        lines += ["", "| held-out metric | base | adapter |", "|---|---|---|"]
        lines += [f"| {k} | {base.get(k, float('nan')):.3f} | {v:.3f} |" for k, v in scores.items()]
        lines.append(f"\nMeasured through llama.cpp on {metrics.get('heldout_examples')} held-out examples.")
    if intrinsic:
        lines += [
            "",
            "A Mellea intrinsic: `io.yaml` describes its input and output. Load it by this repository's ID "
            "with Mellea's `CustomIntrinsicAdapter`.",
        ]
    lines += [
        "",
        "## Serve",
        "",
        "```",
        "llama-server -m BASE.gguf --lora adapter.gguf --jinja --chat-template-file chat_template.jinja",
        "```",
    ]
    return str(ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines) + "\n"))


def training_sample(adapter_dir: Path, count: int = 3) -> list[str]:
    """A few requests of the data the adapter was trained on (the privacy step shows them before upload)."""
    adapter_dir = Path(adapter_dir)
    source = adapter_dir / "SOURCE"  # a run's final_adapter/ names its iteration folder
    folders = [adapter_dir]
    if source.is_file():
        folders.insert(0, adapter_dir.parent / source.read_text(encoding="utf-8").strip())
    for folder in folders:
        path = folder / Artifact.TRAIN.value
        if path.is_file():
            rows = read_jsonl(path, tolerant=True)[:count]
            return [_first_text(row) for row in rows]
    return []


def _first_text(row: dict[str, Any]) -> str:
    if "item" in row:
        return str(row["item"])[:200]
    user = next((m.get("content") for m in row.get("messages", []) if m.get("role") == "user"), "")
    return str(user)[:200]


def upload(folder: Path, repo_id: str, *, private: bool, endpoint: str | None = None) -> str:
    """Create the repository if needed and upload `folder` in one commit; the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Upload adapter (loraforge)")
    except Exception as exc:  # noqa: BLE001 - HfHubHTTPError, OSError, and the HTTP library's own errors
        raise LoraforgeError(
            f"The upload to {repo_id} failed ({str(exc).splitlines()[0][:200]}); nothing was recorded as uploaded.",
            fix="Check HF_TOKEN and the network, then run the same command again.",
        ) from None
    return str(getattr(info, "commit_url", info))
