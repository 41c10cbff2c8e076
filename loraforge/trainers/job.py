"""A whole training job, shared by `loraforge train` and the run loop: load the base, encode the rows, train, save."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loraforge.chat.format import ChatFormat, template_for_model
from loraforge.constants import Artifact
from loraforge.errors import ConfigError
from loraforge.files import atomic_write_json, atomic_write_text
from loraforge.trainers.checkpoint import CHECKPOINT
from loraforge.trainers.config import TrainConfig
from loraforge.trainers.data import answer_subset, encode_training_row, invocation_ids
from loraforge.trainers.lora import TrainResult, train_lora


def default_invocation(fmt: ChatFormat) -> str:
    """The text the template puts before an assistant turn ('<|im_start|>assistant\\n' for ChatML)."""
    probe = [{"role": "user", "content": "x"}]
    return fmt.render(probe, add_generation_prompt=True)[len(fmt.render(probe)) :]


def chat_format_for(base: Path, tokenizer: Any, override: str | None = None) -> ChatFormat:
    """The chat format to train with: `override` (a --chat-template the user passed), else loraforge's tool
    template for the base model's family."""
    from loraforge.gguf_info import read_gguf_info

    info = read_gguf_info(base) if Path(base).is_file() else None
    source = info.chat_template if info else getattr(tokenizer, "chat_template", None)
    return ChatFormat.of(template_for_model(source, override, info.architecture if info else None))


def load_for_training(base: Path, config: TrainConfig, progress: Any = None):
    """(model, tokenizer); QLoRA loads a 4-bit base through bitsandbytes and needs CUDA."""
    from loraforge.models.loading import hf_folder_for, load_base_model

    if config.adapter != "qlora":
        return load_base_model(base, progress=progress)
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "QLoRA trains on a 4-bit base through bitsandbytes, which needs a CUDA GPU; none is visible here.",
            fix="Use --adapter lora on this machine (a 135M-1B model trains fine in full precision).",
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError("QLoRA needs bitsandbytes.", fix="pip install bitsandbytes") from None
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    folder = hf_folder_for(base, progress=progress)
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(str(folder), quantization_config=quant, device_map={"": 0})
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    return model, AutoTokenizer.from_pretrained(str(folder))


def run_training(
    rows: list[dict[str, Any]],
    base: Path,
    config: TrainConfig,
    out_dir: Path,
    *,
    progress: Any = None,
    on_step: Any = None,
    extra_meta: dict[str, Any] | None = None,
    checkpoint_every: float = 60.0,
    should_stop: Any = None,
    chat_template: str | None = None,
    init_adapter: Path | None = None,
) -> TrainResult:
    """Train on chat rows and write the adapter folder: PEFT files, chat template and loraforge.json.
    `chat_template` (a checked --chat-template) replaces the template of the base model's family;
    `init_adapter` (an adapter folder of the same shape) is where the weights start (a warm start)."""
    out_dir = Path(out_dir)
    model, tokenizer = load_for_training(base, config, progress)
    fmt = chat_format_for(base, tokenizer, chat_template)
    adapter_extra: dict[str, Any] = {}
    invocation = None
    if config.adapter == "alora":
        invocation = config.invocation_prompt or default_invocation(fmt)
        adapter_extra["alora_invocation_tokens"] = invocation_ids(tokenizer, invocation)
    encoded = [
        encode_training_row(fmt, tokenizer, row, invocation=invocation, train_all=config.train_on == "all")
        for row in answer_subset(rows, config.answer_share, config.seed)
    ]
    too_long = sum(len(e.input_ids) > config.max_length for e in encoded)
    if too_long and progress:
        longest = max(len(e.input_ids) for e in encoded)
        progress(
            f"warning: {too_long} of {len(encoded)} training rows are longer than max_length {config.max_length} "
            f"tokens (longest {longest}) and are skipped; raise training.max_length to keep them."
        )
    log_path = out_dir / Artifact.TRAIN_LOG.value
    lead = int(os.environ.get("RANK", "0")) == 0  # under torchrun, the first process writes the files
    if lead and not (out_dir / CHECKPOINT).is_file():
        log_path.unlink(missing_ok=True)  # a fresh start; a resumed run keeps its log
    result = train_lora(
        model,
        tokenizer.pad_token_id,
        encoded,
        config,
        out_dir,
        log_path=log_path,
        progress=on_step,
        adapter_extra=adapter_extra,
        checkpoint_every=checkpoint_every,
        should_stop=should_stop,
        init_adapter=init_adapter,
    )
    if not lead:
        return result
    atomic_write_text(out_dir / Artifact.CHAT_TEMPLATE.value, fmt.template)
    meta = {
        "base_model": str(base),
        "adapter": config.adapter,
        "chat_template": Artifact.CHAT_TEMPLATE.value,
        "invocation_prompt": invocation,
        "training": asdict(config),
        "warm_start_from": str(init_adapter) if init_adapter else None,
        **(extra_meta or {}),
    }
    atomic_write_json(out_dir / Artifact.ADAPTER_META.value, meta)
    atomic_write_json(out_dir / Artifact.TRAIN_RESULT.value, {**result.__dict__, "config": asdict(config)})
    return result
