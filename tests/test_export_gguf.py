"""GGUF export on a tiny llama-shaped model: names, shapes, metadata and the q/k permutation."""

import json
from pathlib import Path

import numpy as np
import pytest

from loraforge.errors import ConfigError
from loraforge.gguf_info import GGUFInfo
from loraforge.trainers.export_gguf import export_adapter, permute_rows

N_HEAD, N_KV, HIDDEN, LAYERS, RANK = 4, 2, 64, 2, 4
HEAD_DIM = HIDDEN // N_HEAD


def read_back(path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {}
    for key, field in reader.fields.items():
        if field.types and field.types[0] == gguf.GGUFValueType.STRING:
            fields[key] = bytes(field.parts[field.data[0]]).decode()
        elif field.data:
            fields[key] = field.parts[field.data[0]].tolist()
    tensors = {t.name: np.array(t.data).reshape([int(d) for d in reversed(t.shape)]) for t in reader.tensors}
    return fields, tensors


def peft_tensor(adapter_dir, module, which):
    from safetensors.numpy import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    return weights[f"base_model.model.model.{module}.lora_{which}.weight"]


def test_names_shapes_and_metadata(adapter_dir, tmp_path):
    info = GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False)
    summary = export_adapter(adapter_dir, info, tmp_path / "a.gguf")
    fields, tensors = read_back(tmp_path / "a.gguf")
    assert fields["general.architecture"] == "llama"
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == [8.0]
    assert summary.tensors == len(tensors) == LAYERS * 7 * 2
    expected = {
        "attn_q": (HIDDEN, HIDDEN),
        "attn_k": (N_KV * HEAD_DIM, HIDDEN),
        "attn_v": (N_KV * HEAD_DIM, HIDDEN),
        "attn_output": (HIDDEN, HIDDEN),
        "ffn_gate": (96, HIDDEN),
        "ffn_up": (96, HIDDEN),
        "ffn_down": (HIDDEN, 96),
    }
    for layer in range(LAYERS):
        for short, (out_dim, in_dim) in expected.items():
            assert tensors[f"blk.{layer}.{short}.weight.lora_a"].shape == (RANK, in_dim)
            assert tensors[f"blk.{layer}.{short}.weight.lora_b"].shape == (out_dim, RANK)


def test_q_and_k_lora_b_are_permuted_and_nothing_else(adapter_dir, tmp_path):
    info = GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False)
    export_adapter(adapter_dir, info, tmp_path / "a.gguf")
    _, tensors = read_back(tmp_path / "a.gguf")
    for proj, short, heads in (("self_attn.q_proj", "attn_q", N_HEAD), ("self_attn.k_proj", "attn_k", N_KV)):
        hf_b = peft_tensor(adapter_dir, f"layers.1.{proj}", "B")
        ours = tensors[f"blk.1.{short}.weight.lora_b"]
        # llama.cpp row 2i + half of a head holds Hugging Face row half * head_dim / 2 + i of that head
        for head in range(heads):
            for i in range(HEAD_DIM // 2):
                for half in (0, 1):
                    assert np.array_equal(
                        ours[head * HEAD_DIM + 2 * i + half], hf_b[head * HEAD_DIM + half * HEAD_DIM // 2 + i]
                    )
        assert not np.array_equal(ours, hf_b)
        assert np.array_equal(
            tensors[f"blk.1.{short}.weight.lora_a"], peft_tensor(adapter_dir, f"layers.1.{proj}", "A")
        )
    assert np.array_equal(
        tensors["blk.0.attn_v.weight.lora_b"], peft_tensor(adapter_dir, "layers.0.self_attn.v_proj", "B")
    )


def test_architectures_without_permutation_keep_rows(adapter_dir, tmp_path):
    info = GGUFInfo("qwen2", LAYERS, N_HEAD, N_KV, None, False)
    export_adapter(adapter_dir, info, tmp_path / "q.gguf")
    fields, tensors = read_back(tmp_path / "q.gguf")
    assert fields["general.architecture"] == "qwen2"
    assert np.array_equal(
        tensors["blk.0.attn_q.weight.lora_b"], peft_tensor(adapter_dir, "layers.0.self_attn.q_proj", "B")
    )


def test_an_architecture_whose_layout_loraforge_has_not_checked_is_refused_by_name(adapter_dir, tmp_path):
    from loraforge.errors import ConfigError

    for arch in ("phi3", "falcon"):  # known to gguf, not checked here
        with pytest.raises(ConfigError, match=f"for {arch} models"):
            export_adapter(adapter_dir, GGUFInfo(arch, LAYERS, N_HEAD, N_KV, None, False), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_permute_rows_is_a_permutation():
    weight = np.arange(32 * 3, dtype=np.float32).reshape(32, 3)
    permuted = permute_rows(weight, 2)
    assert sorted(permuted[:, 0].tolist()) == weight[:, 0].tolist()
    assert not np.array_equal(permuted, weight)
    # Within each head of 16 rows, halves [0..7] and [8..15] interleave: 0, 8, 1, 9, ...
    order = (permuted[:, 0] // 3).astype(int).tolist()
    assert order[:16] == [r for pair in zip(range(0, 8), range(8, 16)) for r in pair]
    assert order[16:] == [16 + r for r in order[:16]]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"use_dora": True}, "DoRA"),
        ({"use_rslora": True}, "rsLoRA"),
        ({"modules_to_save": ["lm_head"]}, "full modules"),
    ],
)
def test_inexpressible_adapters_are_refused(adapter_dir, tmp_path, change, message):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(adapter_dir, copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    config.update(change)
    (copy / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=message):
        export_adapter(copy, GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False), tmp_path / "x.gguf")


def test_missing_pieces_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        export_adapter(tmp_path / "nope", GGUFInfo("llama", 1, 1, 1, None, False), tmp_path / "x.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="adapter_config.json"):
        export_adapter(tmp_path / "empty", GGUFInfo("llama", 1, 1, 1, None, False), tmp_path / "x.gguf")


def _broken_copy(adapter_dir, tmp_path, config_text=None, tensors=None):
    import shutil

    from safetensors.numpy import save_file

    copy = tmp_path / "broken"
    shutil.copytree(adapter_dir, copy)
    if config_text is not None:
        (copy / "adapter_config.json").write_text(config_text)
    if tensors is not None:
        save_file(tensors, str(copy / "adapter_model.safetensors"))
    return copy


def _weights(adapter_dir):
    from safetensors.numpy import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


@pytest.mark.parametrize(
    "config, said",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"peft_type": "LORA"}', "'r'"),
        ('{"r": "eight"}', "'r'"),
    ],
)
def test_broken_adapter_configs_are_refused_before_anything_is_written(adapter_dir, tmp_path, config, said):
    copy = _broken_copy(adapter_dir, tmp_path, config_text=config)
    with pytest.raises(ConfigError, match=said):
        export_adapter(copy, GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False), copy / "adapter.gguf")
    assert not (copy / "adapter.gguf").exists()


def test_tensors_that_disagree_with_the_config_are_refused(adapter_dir, tmp_path):
    weights = _weights(adapter_dir)
    base = GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False)
    low_rank = {k: (v[: RANK // 2] if "lora_A" in k else v[:, : RANK // 2]) for k, v in weights.items()}
    copy = _broken_copy(adapter_dir, tmp_path, tensors=low_rank)
    with pytest.raises(ConfigError, match="has rank"):
        export_adapter(copy, base, copy / "adapter.gguf")
    zero = {k: (np.zeros_like(v) if "lora_A" in k else v) for k, v in weights.items()}
    copy = _broken_copy(adapter_dir, tmp_path / "z", tensors=zero)
    with pytest.raises(ConfigError, match="zero"):
        export_adapter(copy, base, copy / "adapter.gguf")
    assert not (copy / "adapter.gguf").exists()
    untrained = {k: (np.zeros_like(v) if "lora_B" in k else v) for k, v in weights.items()}  # PEFT's start
    copy = _broken_copy(adapter_dir, tmp_path / "u", tensors=untrained)
    with pytest.raises(ConfigError, match="lora_B matrix is zero"):
        export_adapter(copy, base, copy / "adapter.gguf")
    assert not (copy / "adapter.gguf").exists()


FULL_BASE = GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False, HIDDEN, head_dim=HEAD_DIM, ffn_size=96)


@pytest.mark.parametrize(
    "suffix, axis",
    [
        ("o_proj.lora_B.weight", 0),
        ("k_proj.lora_B.weight", 0),
        ("q_proj.lora_B.weight", 0),
        ("up_proj.lora_B.weight", 0),
        ("o_proj.lora_A.weight", 1),
        ("down_proj.lora_A.weight", 1),
    ],
)
def test_a_lora_matrix_of_the_wrong_width_is_refused(adapter_dir, tmp_path, suffix, axis):
    from loraforge.trainers.export_gguf import check_adapter_matches_base

    assert check_adapter_matches_base(adapter_dir, FULL_BASE) == []
    weights = _weights(adapter_dir)
    key = next(k for k in weights if k.endswith(suffix))
    weights[key] = np.concatenate([weights[key], weights[key]], axis=axis)
    copy = _broken_copy(adapter_dir, tmp_path, tensors=weights)
    with pytest.raises(ConfigError, match="outputs" if axis == 0 else "inputs"):
        check_adapter_matches_base(copy, FULL_BASE)


def test_another_base_file_with_fitting_shapes_is_warned_about(adapter_dir, tmp_path):
    import shutil

    from loraforge.trainers.export_gguf import check_adapter_matches_base

    copy = tmp_path / "copy"
    shutil.copytree(adapter_dir, copy)
    (copy / "loraforge.json").write_text(json.dumps({"architecture": "llama", "base_model": "/m/SmolLM2.gguf"}))
    base = GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False, HIDDEN)
    assert check_adapter_matches_base(copy, base, Path("/m/SmolLM2.gguf")) == []
    (warning,) = check_adapter_matches_base(copy, base, Path("/other/Qwen.gguf"))
    assert "SmolLM2.gguf" in warning and "Qwen.gguf" in warning


def test_fidelity_without_top_logprobs_is_a_clear_error(monkeypatch, tmp_path):
    """A server that returns no top_logprobs would silently drop the log-probability gate."""
    import torch

    from loraforge.errors import ServerError
    from loraforge.evaluators import fidelity

    logprobs = torch.zeros(2, 8).log_softmax(-1)
    monkeypatch.setattr(fidelity, "peft_references", lambda *a: [fidelity.Reference([1, 2], logprobs, logprobs)])

    async def no_logprobs(*a):
        return fidelity.LlamaSide([[1, 2]], [[{}, {}]], [[{}, {}]], [[1, 2]])

    monkeypatch.setattr(fidelity, "llama_side", no_logprobs)
    with pytest.raises(ServerError, match="top_logprobs") as info:
        fidelity.check_fidelity(tmp_path, tmp_path / "base.gguf", tmp_path / "a.gguf", [[5, 6]], eos=0)
    assert "--no-check" in info.value.fix

    # Some positions without them would thin the gate out as silently: also an error, which says how many.
    async def some_logprobs(*a):
        return fidelity.LlamaSide([[1, 2]], [[{1: -0.1}, {}]], [[{1: -0.1}, {2: -0.2}]], [[1, 2]])

    monkeypatch.setattr(fidelity, "llama_side", some_logprobs)
    with pytest.raises(ServerError, match="at 1 of the positions"):
        fidelity.check_fidelity(tmp_path, tmp_path / "base.gguf", tmp_path / "a.gguf", [[5, 6]], eos=0)


def test_a_peft_adapter_made_for_another_hub_model_is_warned_about(adapter_dir, tmp_path):
    """An adapter from outside loraforge has no loraforge.json; PEFT's base_model_name_or_path is compared."""
    import shutil

    from loraforge.trainers.export_gguf import check_adapter_matches_base

    copy = tmp_path / "outside"
    shutil.copytree(adapter_dir, copy)
    (copy / "loraforge.json").unlink(missing_ok=True)
    config = json.loads((copy / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    (copy / "adapter_config.json").write_text(json.dumps(config))
    same = GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False, HIDDEN, name="SmolLM2 135M Instruct")
    assert check_adapter_matches_base(copy, same) == []
    other = GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False, HIDDEN, name="Llama 3.2 1B Instruct")
    (warning,) = check_adapter_matches_base(copy, other)
    assert "SmolLM2-135M-Instruct" in warning and "Llama 3.2 1B Instruct" in warning


@pytest.mark.parametrize("text", ["not json {", "[1, 2]"])
def test_a_broken_loraforge_json_is_a_clean_error_naming_it(adapter_dir, tmp_path, text):
    import shutil

    from loraforge.trainers.export_gguf import check_adapter_matches_base

    copy = tmp_path / "broken"
    shutil.copytree(adapter_dir, copy)
    (copy / "loraforge.json").write_text(text)
    base = GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False, HIDDEN)
    with pytest.raises(ConfigError, match="loraforge.json"):
        check_adapter_matches_base(copy, base)


def test_an_alora_invocation_is_written_as_llama_cpps_uint32_array(adapter_dir, tmp_path):
    """llama.cpp refuses an aLoRA adapter whose invocation tokens are not uint32 ('invalid gguf element
    type'); Python ints would be written as int32 by default."""
    import shutil

    import gguf

    alora = tmp_path / "alora"
    shutil.copytree(adapter_dir, alora)
    config = json.loads((alora / "adapter_config.json").read_text())
    config["alora_invocation_tokens"] = [1, 9690, 198]
    (alora / "adapter_config.json").write_text(json.dumps(config))
    export_adapter(alora, GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False), tmp_path / "a.gguf")
    field = gguf.GGUFReader(str(tmp_path / "a.gguf")).fields[gguf.Keys.Adapter.ALORA_INVOCATION_TOKENS]
    assert field.types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT32]
    assert [int(field.parts[i][0]) for i in field.data] == [1, 9690, 198]


def _fake_proof(monkeypatch, outcome):
    """export_proven on the tiny adapter, with the llama.cpp side of the proof replaced by `outcome`."""
    from loraforge import gguf_info
    from loraforge.evaluators import fidelity
    from loraforge.export import proven

    base = GGUFInfo("llama", LAYERS, N_HEAD, N_KV, None, False, HIDDEN)
    monkeypatch.setattr(gguf_info, "read_gguf_info", lambda path: base)
    monkeypatch.setattr(proven, "fidelity_prompts", lambda *a: ([[1, 2]], 0))

    def check(*a):
        if isinstance(outcome, BaseException):
            raise outcome
        return dict(outcome)

    monkeypatch.setattr(fidelity, "check_fidelity", check)
    return proven.export_proven


def test_an_adapter_that_fails_its_proof_gets_no_serving_bundle(adapter_dir, tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "a"
    shutil.copytree(adapter_dir, folder)
    export_proven = _fake_proof(monkeypatch, {"passed": False, "reason": "log-prob error 0.6 > 0.2"})
    outcome = export_proven(folder, tmp_path / "base.gguf")
    assert not outcome.passed and outcome.bundle == []
    assert not (folder / "serve.sh").exists() and not (folder / "Modelfile").exists()
    assert json.loads((folder / "export_report.json").read_text())["passed"] is False


def test_a_proof_that_breaks_off_leaves_no_unproven_gguf(adapter_dir, tmp_path, monkeypatch):
    import shutil

    from loraforge.errors import ServerError

    folder = tmp_path / "a"
    shutil.copytree(adapter_dir, folder)
    export_proven = _fake_proof(monkeypatch, ServerError("llama.cpp stopped answering"))
    with pytest.raises(ServerError):
        export_proven(folder, tmp_path / "base.gguf")
    assert not (folder / "adapter.gguf").exists() and not (folder / "export_report.json").exists()


def test_a_gguf_adapter_for_another_base_is_named_before_it_is_served(tmp_path, write_gguf):
    import numpy as np

    from loraforge.gguf_info import adapter_mismatch

    base = write_gguf(tmp_path / "base.gguf", "llama", {"blk.0.attn_q.weight": np.zeros((64, 48), np.float32)})
    # numpy (rows, cols) is GGUF (ne1, ne0): the base's attn_q takes 48 inputs and gives 64 outputs
    fits = {
        "blk.0.attn_q.weight.lora_a": np.zeros((4, 48), np.float32),
        "blk.0.attn_q.weight.lora_b": np.zeros((64, 4), np.float32),
    }
    assert adapter_mismatch(write_gguf(tmp_path / "fits.gguf", "llama", fits), base) is None
    wide = {**fits, "blk.0.attn_q.weight.lora_a": np.zeros((4, 32), np.float32)}
    assert "32 inputs" in adapter_mismatch(write_gguf(tmp_path / "wide.gguf", "llama", wide), base)
    deeper = {"blk.7.attn_q.weight.lora_a": np.zeros((4, 48), np.float32)}
    assert "does not have" in adapter_mismatch(write_gguf(tmp_path / "deep.gguf", "llama", deeper), base)
    assert "qwen2" in adapter_mismatch(write_gguf(tmp_path / "qwen.gguf", "qwen2", fits), base)
