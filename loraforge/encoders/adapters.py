"""Encoder adapters on disk: saving one atomically, and loading one onto its base only after checking
that it fits (the codecontext guide's rules, seed 003: the folder exists, holds adapter_config.json and
weights, is a LoRA of the right task, and was trained on this base)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.encoders.config import EncoderTask
from loraforge.encoders.model import hub_id, load_classifier, load_embedder
from loraforge.errors import ConfigError
from loraforge.files import atomic_write_json, read_json_object

PEFT_TASK = {"sequence-classification": "SEQ_CLS", "embedding": "FEATURE_EXTRACTION"}


def base_fingerprint(model_dir: Path) -> str:
    """What identifies a base encoder: its config.json (architecture, sizes, vocabulary) and its weights (the
    size and the first and last MiB of each weights file, so that two fine-tunes of one architecture differ)."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config.pop("_name_or_path", None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for weights in sorted([*model_dir.glob("*.safetensors"), *model_dir.glob("*.bin")]):
        size = weights.stat().st_size
        digest.update(f"{weights.name}:{size}".encode())
        with open(weights, "rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def save(model: Any, out: Path, meta: dict[str, Any], model_dir: Path) -> Path:
    """The PEFT adapter and loraforge.json in `out`: written to a temporary folder inside it, then each file
    renamed into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    known = hub_id(model_dir)
    if known is not None:  # the adapter's config names the base on the Hub, not a path in ~/.cache
        for config in model.peft_config.values():
            config.base_model_name_or_path = known
    out.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".adapter.", dir=out))
    try:
        model.save_pretrained(str(scratch))
        atomic_write_json(
            scratch / Artifact.ADAPTER_META.value,
            {**meta, "model_kind": "encoder", "base_fingerprint": base_fingerprint(model_dir), "base_hub_id": known},
        )
        (scratch / Artifact.MODEL_CARD.value).write_text(card(meta, known or str(model_dir)), encoding="utf-8")
        # each file renamed into place; the meta file last, so a folder with it holds a whole adapter
        names = sorted(p.name for p in scratch.iterdir() if p.is_file())
        for name in sorted(names, key=lambda n: n == Artifact.ADAPTER_META.value):
            os.replace(scratch / name, out / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def card(meta: dict[str, Any], base: str) -> str:
    """A short model card: what the adapter is, on which base, and how to serve it."""
    task = meta.get("task", "sequence-classification")
    labels = f"Labels: {', '.join(meta['labels'])}.\n\n" if meta.get("labels") else ""
    post = 'curl -X POST -H "Content-Type: application/json" http://127.0.0.1:8001'
    if task == "sequence-classification":
        route = f"""{post}/nli/predict -d '{{"premise": "...", "hypothesis": "..."}}'"""
    else:
        route = f"""{post}/embed -d '{{"texts": ["..."]}}'"""
    load = f"""{post}/nli/adapter/load -d '{{"adapter_path": "path/to/adapter"}}'"""
    return (
        f"# Encoder LoRA adapter ({task})\n\nBase model: {base}. Trained by loraforge; PEFT format "
        f"(the classification head, where there is one, is saved in the adapter).\n\n{labels}"
        f"Serve it:\n\n    loraforge serve-encoder --adapter . --task {task}\n    {route}\n\n"
        f"Swap in another adapter without a restart:\n\n    {load}\n"
    )


def check(adapter_dir: Path, model_dir: Path, task: EncoderTask) -> dict[str, Any]:
    """The adapter's loraforge.json once its folder, files, type, task and base are checked; else ConfigError."""
    path = Path(adapter_dir)
    if not path.exists():
        raise ConfigError(f"The adapter path {path} does not exist.", fix="Pass the folder that training wrote.")
    if not path.is_dir():
        raise ConfigError(f"The adapter path {path} is not a folder.", fix="Pass the adapter's folder, not a file.")
    config_file = path / Artifact.ADAPTER_CONFIG.value
    if not config_file.is_file():
        raise ConfigError(f"{path} is not a LoRA adapter: it has no {Artifact.ADAPTER_CONFIG.value}.")
    if not (path / Artifact.ADAPTER_WEIGHTS.value).is_file():
        raise ConfigError(f"{path} has no {Artifact.ADAPTER_WEIGHTS.value}: its weights are missing.")
    config = read_json_object(config_file)
    if config.get("peft_type") != "LORA":
        raise ConfigError(f"{path} is a {config.get('peft_type')} adapter; only LoRA adapters load here.")
    if config.get("task_type") != PEFT_TASK[task]:
        raise ConfigError(
            f"{path} is a {config.get('task_type')} adapter, and this server runs the {task} task ({PEFT_TASK[task]}).",
            fix="Load an adapter trained for this task (`loraforge train --task ...`).",
        )
    meta = read_json_object(path / Artifact.ADAPTER_META.value)
    expected = base_fingerprint(model_dir)
    if meta.get("base_fingerprint") is None:  # an adapter from elsewhere: its config must name this base
        named = config.get("base_model_name_or_path")
        if named not in {hub_id(model_dir), str(model_dir), str(Path(model_dir).resolve())} - {None}:
            raise ConfigError(
                f"{path} was not trained by loraforge and names the base {named!r}, so it cannot be checked "
                f"against this server's base ({hub_id(model_dir) or model_dir}).",
                fix="Train it with `loraforge train --task ...`, or serve it on the base it names.",
            )
    elif meta["base_fingerprint"] != expected:
        raise ConfigError(
            f"{path} was trained on another base model (fingerprint {meta['base_fingerprint']}, "
            f"this server's base is {expected}).",
            fix="Load an adapter trained on this server's base, or start the server on that adapter's base.",
        )
    if task == "sequence-classification" and not meta.get("labels"):
        raise ConfigError(f"{path} does not say its labels (no labels in {Artifact.ADAPTER_META.value}).")
    return meta


def load(adapter_dir: Path, model_dir: Path, task: EncoderTask) -> Any:
    """A fresh model of the base with the adapter applied, after `check`; shape mismatches become ConfigError."""
    from peft import PeftModel

    meta = check(adapter_dir, model_dir, task)
    base = (
        load_classifier(model_dir, list(meta["labels"]))
        if task == "sequence-classification"
        else load_embedder(model_dir)
    )
    try:
        model = PeftModel.from_pretrained(base, str(adapter_dir))
    except Exception as exc:  # sizes or module names that do not fit this base, a corrupt weights file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{adapter_dir} does not fit the base model: {first[:300]}") from None
    model.eval()
    return model
