"""A tiny random Llama for tests that need a real transformers model but not a trained one."""


def tiny_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        vocab_size=64,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config)
