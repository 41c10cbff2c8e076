import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def tools_yaml(tmp_path):
    def write(text: str, name: str = "tools.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory):
    """A GGUF file with a small llama model's metadata and no weights: enough for code that only reads a
    model's header (the loop's setup), so that tests of the loop's logic need no model package."""
    import gguf

    path = tmp_path_factory.mktemp("model") / "tiny-llama.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_embedding_length(64)
    writer.add_add_bos_token(False)
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def write_gguf():
    """Writes a GGUF file holding only the given tensors (name -> numpy array), for checks that read shapes."""

    def write(path, arch, tensors):
        import gguf

        writer = gguf.GGUFWriter(str(path), arch)
        for name, value in tensors.items():
            writer.add_tensor(name, value)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    return write


@pytest.fixture(scope="session")
def adapter_dir(tmp_path_factory):
    """A PEFT LoRA (rank 4, every projection, random lora_B) on a random llama of tiny_gguf's shape: 2 layers,
    width 64, 4 heads, 2 KV heads."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tiny import tiny_model

    model = get_peft_model(
        tiny_model("llama", width=64, vocab=128, ffn=96),
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    path = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(path)
    return path
