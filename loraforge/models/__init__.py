"""The base model: where its GGUF file comes from (`paths.py`) and loading it as trainable Hugging Face
weights (`loading.py`, which imports torch and transformers only when called)."""

from loraforge.models.paths import DEFAULT_MODEL_PACKAGE, default_model_path, is_gguf, resolve_model

__all__ = ["DEFAULT_MODEL_PACKAGE", "default_model_path", "is_gguf", "resolve_model"]
