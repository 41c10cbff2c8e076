"""Tiny random models for tests that need a real transformers model but not a trained one."""


def tiny_model(kind: str = "llama", width: int = 32, vocab: int = 64, ffn: int | None = None):
    """A two-layer model of width 32 (4 heads, 2 KV heads): "llama", "qwen2", or "gemma3" (one sliding-window
    layer of 8 tokens, shorter than the tests' shared prompts, then one full-attention layer)."""
    import torch
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    torch.manual_seed(0)
    shape = dict(
        hidden_size=width,
        intermediate_size=ffn or width * 2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        vocab_size=vocab,
        pad_token_id=0,
    )
    if kind == "gemma3":
        config = Gemma3TextConfig(
            **shape, head_dim=16, sliding_window=8, layer_types=["sliding_attention", "full_attention"]
        )
        return Gemma3ForCausalLM(config)
    if kind == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**shape))
    return LlamaForCausalLM(LlamaConfig(**shape))
