"""Training a LoRA: rows to token ids with the chat template and a loss mask (`formatting.py`, `data.py`),
the PEFT training loop (`lora.py`, run by `job.py`), checkpoints, the GGUF export of the adapter
(`export_gguf.py`) and the serving bundle (`bundle.py`)."""
