"""The training loop on a tiny random llama: resume, out-of-memory backoff, aLoRA, data formats."""

import json
import random

import pytest
from tiny import tiny_model

from loraforge.errors import ConfigError
from loraforge.files import read_jsonl
from loraforge.trainers import lora
from loraforge.trainers.config import TrainConfig
from loraforge.trainers.data import encode_training_row, load_training_rows
from loraforge.trainers.formatting import IGNORE, Encoded


def examples(count=12, prefix=20):
    rng = random.Random(0)
    shared = [rng.randrange(3, 60) for _ in range(prefix)]
    out = []
    for _ in range(count):
        body = [rng.randrange(3, 60) for _ in range(rng.randrange(4, 9))]
        answer = [rng.randrange(3, 60) for _ in range(3)] + [2]
        ids = shared + body + [1] + answer
        out.append(Encoded(ids, [IGNORE] * (len(ids) - len(answer)) + answer))
    return out


def config(**overrides):
    base = dict(
        epochs=2,
        batch_size=4,
        learning_rate=1e-2,
        r=4,
        alpha=8,
        warmup_steps=1,
        val_fraction=0.0,
        target_modules=["q_proj", "v_proj"],
        dtype="float32",
        threads=1,
    )
    base.update(overrides)
    return TrainConfig(**base)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma3"])
def test_shared_prefix_path_gives_the_same_loss_and_gradients(kind):
    """For every architecture family: Gemma 3's sliding-window layers need a cache that knows its layer
    kinds (a plain cache broke its attention masks)."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model(kind), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param)
    batch = lora.collate(examples(4), 0, "cpu")
    results = []
    for min_prefix in (10_000, 1):  # plain path, then the shared-prefix path
        model.zero_grad()
        loss, n = lora.supervised_loss(model, *batch, min_prefix=min_prefix)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((loss.item(), n, grads))
    assert results[0][1] == results[1][1]
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    assert torch.allclose(results[0][2], results[1][2], atol=1e-5)


def test_the_loss_covers_exactly_the_supervised_tokens():
    """supervised_loss against the model's own loss with labels: the same mean over the same positions,
    prompt and padding masked out, on both paths (plain and shared prefix)."""
    import torch

    model = tiny_model("llama").eval()
    rows = examples(4)
    ids, labels, mask = lora.collate(rows, 0, "cpu")
    expected_n = sum(1 for e in rows for label in e.labels[1:] if label != IGNORE)
    hf_labels = labels.masked_fill(mask == 0, -100).masked_fill(labels == IGNORE, -100)
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask, labels=hf_labels).loss.item()  # mean per token
        for min_prefix in (10_000, 1):
            loss, n = lora.supervised_loss(model, ids, labels, mask, min_prefix=min_prefix)
            assert n == expected_n
            assert loss.item() / n == pytest.approx(reference, rel=1e-5)
        # Supervising one more token (a prompt token) changes the loss: the mask is what decides.
        labels[0, 5] = ids[0, 5]
        loss, n = lora.supervised_loss(model, ids, labels, mask)
        assert n == expected_n + 1


def test_training_lowers_the_loss_and_saves_an_adapter(tmp_path):
    result = lora.train_lora(tiny_model(), 0, examples(), config(epochs=6), tmp_path, log_path=tmp_path / "log.jsonl")
    losses = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    assert (tmp_path / "adapter_model.safetensors").is_file() and result.steps == 6 * 3
    assert not (tmp_path / "checkpoint.pt").exists()


class Stop(Exception):
    pass


def die_at_step_4(step, total, record):
    """A progress callback that kills training after its fourth step (a checkpoint is saved every step)."""
    if step == 4:
        raise Stop


def test_killed_training_resumes_from_its_checkpoint(tmp_path):
    reference = lora.train_lora(tiny_model(), 0, examples(), config(epochs=3), tmp_path / "ref")

    with pytest.raises(Stop):
        lora.train_lora(
            tiny_model(),
            0,
            examples(),
            config(epochs=3),
            tmp_path / "run",
            progress=die_at_step_4,
            checkpoint_every=0.0,
        )
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    resumed = lora.train_lora(tiny_model(), 0, examples(), config(epochs=3), tmp_path / "run")
    assert resumed.resumed_from_step == 3  # the last checkpoint before the kill
    assert resumed.steps == reference.steps == 9
    from safetensors.numpy import load_file

    a = load_file(str(tmp_path / "ref" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "run" / "adapter_model.safetensors"))
    assert set(a) == set(b)
    for key in a:
        assert abs(a[key] - b[key]).max() < 1e-4, key


def test_out_of_memory_halves_the_micro_batch_and_keeps_the_step_count(tmp_path, monkeypatch):
    real = lora.supervised_loss

    def picky(model, ids, labels, mask, **kwargs):
        if ids.shape[0] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, ids, labels, mask, **kwargs)

    monkeypatch.setattr(lora, "supervised_loss", picky)
    result = lora.train_lora(tiny_model(), 0, examples(), config(epochs=1), tmp_path)
    assert result.micro_batch_split == 2 and result.steps == 3


def test_a_real_error_is_not_mistaken_for_memory(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(lora, "supervised_loss", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        lora.train_lora(tiny_model(), 0, examples(), config(epochs=1), tmp_path)


def test_alora_records_invocation_tokens_and_trains_after_them(tmp_path):
    result = lora.train_lora(
        tiny_model(), 0, examples(), config(epochs=2), tmp_path, adapter_extra={"alora_invocation_tokens": [1]}
    )
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["alora_invocation_tokens"] == [1] and result.steps == 6
    # The trained adapter leaves every position before the invocation as the base has it, and changes
    # the positions after it: the prompt's cache can be shared with the base model.
    import torch
    from peft import PeftModel

    model = PeftModel.from_pretrained(tiny_model(), str(tmp_path)).eval()
    ids = torch.tensor([examples()[0].input_ids])
    start = ids[0].tolist().index(1)
    with torch.no_grad():
        adapted = model(ids).logits[0]
        with model.disable_adapter():
            base = model(ids).logits[0]
    assert torch.allclose(adapted[:start], base[:start], atol=1e-6)
    assert not torch.allclose(adapted[start + 1 :], base[start + 1 :], atol=1e-4)


def test_inexpressible_settings_are_refused():
    with pytest.raises(ConfigError, match="DoRA"):
        TrainConfig(use_dora=True)
    with pytest.raises(ConfigError, match="rsLoRA"):
        TrainConfig(use_rslora=True)
    with pytest.raises(ConfigError, match="lm_head"):
        TrainConfig(target_modules=["q_proj", "lm_head"])


def test_training_rows_in_every_format(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"item": "card declined", "label": "billing"},
                {"instruction": "Name a colour.", "input": "", "output": "blue"},
                {
                    "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                    "tools": None,
                },
            ]
        )
        + "\n"
    )
    rows = load_training_rows(path)
    assert rows[0]["messages"][1] == {"role": "assistant", "content": "billing"}
    assert rows[1]["messages"][0]["content"] == "Name a colour."
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "no answer"}]}\n')
    with pytest.raises(ConfigError, match="line 1: the conversation has no assistant turn"):
        load_training_rows(bad)


class CharTokenizer:
    """One id per character, no special tokens: enough to check which characters are trained."""

    def __call__(self, text, add_special_tokens=False):
        class Out:
            input_ids = [ord(c) for c in text]

        return Out()


def test_alora_encoding_trains_only_the_turn_after_the_invocation():
    from loraforge.chat.format import ChatFormat, builtin_template

    fmt = ChatFormat(builtin_template())
    row = {"messages": [{"role": "user", "content": "card declined"}, {"role": "assistant", "content": "billing"}]}
    encoded = encode_training_row(fmt, CharTokenizer(), row, invocation="<|check|>")
    text = "".join(chr(i) for i in encoded.input_ids)
    trained = "".join(chr(i) for i, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE)
    assert trained == "billing<|im_end|>"
    assert text.endswith("card declined<|im_end|>\n<|check|>billing<|im_end|>")
    plain = encode_training_row(fmt, CharTokenizer(), row)
    assert "".join(chr(i) for i in plain.input_ids).endswith("<|im_start|>assistant\nbilling<|im_end|>\n")


def test_token_budget_splits_forward_passes_without_changing_the_result(tmp_path):
    seen: list[int] = []
    real = lora.supervised_loss

    def watch(model, ids, labels, mask, **kwargs):
        seen.append(lora.positions_run(ids, mask))
        return real(model, ids, labels, mask, **kwargs)

    free = lora.train_lora(tiny_model(), 0, examples(), config(epochs=1), tmp_path / "free")
    lora.supervised_loss = watch
    try:
        budget = max(len(e.input_ids) for e in examples()) + 1  # one row per pass
        tight = lora.train_lora(
            tiny_model(), 0, examples(), config(epochs=1, max_batch_tokens=budget), tmp_path / "tight"
        )
    finally:
        lora.supervised_loss = real
    assert seen and max(seen) <= budget
    assert tight.steps == free.steps
    assert tight.final_train_loss == pytest.approx(free.final_train_loss, rel=2e-3)  # float order only


def test_within_budget_keeps_every_row_in_order():
    rows = examples(prefix=0)
    pieces = lora.within_budget([rows], budget=2 * max(len(e.input_ids) for e in rows))
    assert [e for piece in pieces for e in piece] == rows and all(len(p) <= 2 for p in pieces)


def test_within_budget_counts_a_shared_prefix_once():
    """Rows that share a long prompt (a tools list) stay together while prefix + tails fit: split apart,
    each piece would compute the prompt again."""
    rows = examples(count=8, prefix=200)
    width = max(len(e.input_ids) for e in rows)
    tails = sum(len(e.input_ids) - 200 for e in rows)
    assert lora.within_budget([rows], budget=200 + tails + 8 * (width - 200)) == [rows]
    assert lora.common_prefix(rows) >= 200
    assert lora.piece_positions(rows) < len(rows) * width / 2
    assert len(lora.within_budget([rows], budget=width)) == len(rows)  # room for one row: one row per pass


def test_a_prefix_without_gradients_weighs_less_in_the_budget():
    """A frozen prefix keeps only keys and values: a budget too small for a trained prefix plus the tails
    still holds the rows together when the prefix runs without gradients."""
    rows = examples(count=8, prefix=200)
    width = max(len(e.input_ids) for e in rows)
    tails = 8 * (width - 200)
    budget = 200 // 2 + tails
    assert len(lora.within_budget([rows], budget=budget)) > 1
    assert lora.within_budget([rows], budget=budget, prefix_cost=lora.FROZEN_PREFIX_COST) == [rows]


def test_batches_group_by_prompt_then_by_length_bucket():
    """Rows with one tools prompt and tails of many lengths: each batch takes rows of one length bucket, so
    little of the per-row part is padding; rows of another prompt never join them; and inside a bucket the
    seed decides which rows go together (sorted by exact length, a batch held rows of one tool and style)."""
    rng = random.Random(1)
    a_prompt, b_prompt = [rng.randrange(3, 60) for _ in range(200)], [rng.randrange(3, 60) for _ in range(200)]
    bucket = lora.LENGTH_BUCKET
    rows = []
    for prompt in (a_prompt, b_prompt):
        # 8 rows in each of two length buckets, every length different.
        for total in [4 * bucket + 4 * i for i in range(8)] + [5 * bucket + 4 * i for i in range(8)]:
            body = [rng.randrange(3, 60) for _ in range(total - len(prompt) - 3)]
            ids = prompt + body + [1, 5, 2]
            rows.append(Encoded(ids, [IGNORE] * (len(ids) - 2) + [5, 2]))
    batches = lora.length_batches(rows, 4, random.Random(0))
    assert sorted(id(e) for b in batches for e in b) == sorted(id(e) for e in rows)
    # Exactly ceil(rows / batch) batches, even with prompts whose rows do not fill a batch: the step count,
    # the learning-rate schedule and a resume's position rely on it.
    assert len(batches) == 8
    odd = rows[:15] + rows[16:31] + [Encoded(list(range(3, 40)), [IGNORE] * 35 + [5, 2])]
    assert len(lora.length_batches(odd, 4, random.Random(0))) == 8
    for batch in batches:
        assert len({tuple(e.input_ids[:100]) for e in batch}) == 1
        assert len({len(e.input_ids) // bucket for e in batch}) == 1

    # Inside a bucket the rows mix: over a few seeds, some batch is not a run of neighbours in length.
    def neighbours(batch: list[Encoded]) -> bool:
        same = sorted(len(e.input_ids) for e in rows if e.input_ids[:100] == batch[0].input_ids[:100])
        lengths = sorted(len(e.input_ids) for e in batch)
        return any(same[i : i + 4] == lengths for i in range(0, len(same), 4))

    assert not all(neighbours(b) for seed in range(5) for b in lora.length_batches(rows, 4, random.Random(seed)))


def test_a_resume_may_change_runtime_settings_but_not_what_is_trained(tmp_path):
    with pytest.raises(Stop):
        lora.train_lora(
            tiny_model(), 0, examples(), config(epochs=3), tmp_path, progress=die_at_step_4, checkpoint_every=0.0
        )
    other_runtime = config(epochs=3, threads=1, max_batch_tokens=4096)
    resumed = lora.train_lora(tiny_model(), 0, examples(), other_runtime, tmp_path)
    assert resumed.resumed_from_step == 3 and resumed.dropped_checkpoint == ""
    assert lora.checkpoint_mismatch({"r": 8, "device": "cpu"}, {"r": 8, "device": "cuda"}) == ""
    assert lora.checkpoint_mismatch({"r": 8, "processes": 1}, {"r": 8, "processes": 2}) == ""
    assert "learning_rate" in lora.checkpoint_mismatch({"r": 8, "learning_rate": 1e-3}, {"r": 8, "learning_rate": 5e-4})


def test_a_resume_on_another_process_count_keeps_the_batches_done_and_rebases_the_step():
    # 10 batches an epoch, grad_accum 1. One process stopped in epoch 2 after 3 of its batches (step 13).
    saved = {"step": 13, "epoch": 1, "batch": 3}
    same = lora.resumed_position(saved, 1, 1, 1, 10)
    assert (same.step, same.epoch, same.batch) == (13, 1, 3)
    two = lora.resumed_position(saved, 1, 2, 1, 10)  # 5 steps an epoch now; 3 batches done is 2 steps in
    assert (two.step, two.epoch, two.batch) == (7, 1, 3)
    back = lora.resumed_position({"step": 7, "epoch": 1, "batch": 4}, 2, 1, 1, 10)
    assert (back.step, back.batch) == (14, 4)
    # A checkpoint from before batches were counted: its in-epoch steps times the batches a step took.
    legacy = lora.resumed_position({"step": 7, "epoch": 1}, 2, 1, 1, 10)
    assert (legacy.batch, legacy.step) == (4, 14)


def test_a_checkpoint_for_other_settings_is_dropped_and_said_so(tmp_path):
    with pytest.raises(Stop):
        lora.train_lora(
            tiny_model(), 0, examples(), config(epochs=3), tmp_path, progress=die_at_step_4, checkpoint_every=0.0
        )
    log = tmp_path / "log.jsonl"
    result = lora.train_lora(tiny_model(), 0, examples(), config(epochs=3, learning_rate=1e-3), tmp_path, log_path=log)
    assert result.resumed_from_step == 0 and result.dropped_checkpoint.startswith("learning_rate")
    assert read_jsonl(log)[0] == {"dropped_checkpoint": result.dropped_checkpoint}
    older = tmp_path / "older"  # a checkpoint in the layout before Position: dropped, not a KeyError
    older.mkdir()
    lora.save_checkpoint(older, {"config": {}, "world": 1, "lora": {}, "step": 3})
    assert lora.train_lora(tiny_model(), 0, examples(), config(), older).dropped_checkpoint.startswith("written by")


class _RunsCode:
    """A pickle payload that would create a file if unpickled by a trusting loader."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    import torch

    from loraforge.trainers.checkpoint import CHECKPOINT, load_checkpoint

    marker = tmp_path / "code-ran"
    torch.save({"step": 3, "payload": _RunsCode(str(marker))}, tmp_path / CHECKPOINT)
    with pytest.raises(ConfigError, match="could not be loaded safely"):
        load_checkpoint(tmp_path)
    assert not marker.exists()


def test_the_private_peft_hook_is_still_there():
    """lora.py enters PEFT's private `_enable_peft_forward_hooks(alora_offsets=...)` for aLoRA batches on the
    shared-prefix path; this fails first if a PEFT release renames it or stops taking the offsets."""
    import inspect

    from peft.tuners.lora import LoraModel

    hook = getattr(LoraModel, "_enable_peft_forward_hooks", None)
    assert hook is not None
    source = inspect.getsource(hook)
    assert "alora_offsets" in source


def test_a_share_of_rows_keeps_the_answer_and_the_rest_end_at_their_calls():
    from loraforge.trainers.data import answer_subset, ending_at_calls

    call = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}
    row = {
        "messages": [
            {"role": "user", "content": "do it"},
            call,
            {"role": "tool", "content": "{}"},
            {"role": "assistant", "content": "Done."},
        ]
    }
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]}
    assert ending_at_calls(row)["messages"] == row["messages"][:2]
    assert ending_at_calls(chat) == chat  # nothing to cut
    rows = [row] * 400 + [chat] * 100
    kept = answer_subset(rows, 0.3, seed=0)
    whole = sum(len(r["messages"]) == 4 for r in kept[:400])
    assert 90 <= whole <= 150 and kept[400:] == rows[400:]
    assert kept == answer_subset(rows, 0.3, seed=0) and answer_subset(rows, 1.0, seed=0) is rows
    with pytest.raises(ConfigError, match="answer_share"):
        TrainConfig(answer_share=1.5)


def test_an_alora_prefix_kept_across_steps_gives_the_same_loss_and_gradients():
    """Before the invocation an aLoRA is off, so a shared prompt kept from an earlier step (after the
    adapter has changed) is exact: the loss and the gradients match a fresh computation."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_model(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], alora_invocation_tokens=[1])
    )
    rows = examples(8)
    first, second = lora.collate(rows[:4], 0, "cpu"), lora.collate(rows[4:], 0, "cpu")
    cache = lora.PrefixCache()
    model.zero_grad()
    lora.supervised_loss(model, *first, min_prefix=1, prefix_cache=cache)[0].backward()
    assert len(cache._entries) == 1
    with torch.no_grad():  # the adapter moves on, as after an optimizer step
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.add_(torch.randn_like(param) * 0.1)
    results = []
    for kept in (cache, None):
        model.zero_grad()
        loss, n = lora.supervised_loss(model, *second, min_prefix=1, prefix_cache=kept)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((loss.item(), n, grads))
    assert results[0][1] == results[1][1]
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    assert torch.allclose(results[0][2], results[1][2], atol=1e-6)
    key = next(iter(cache._entries))  # the kept prefix is what the second batch used: spoiling it shows
    hidden, layers = cache._entries[key]
    cache._entries[key] = (hidden, [(k * 0, v * 0) for k, v in layers])
    spoiled = lora.supervised_loss(model, *second, min_prefix=1, prefix_cache=cache)[0].item()
    assert spoiled != pytest.approx(results[1][0], rel=1e-3)
    cache.put([9, 9, 9], None, [])
    assert cache.longest([9, 9, 9, 4])[0] == 3 and cache.longest([8]) is None


def test_shuffled_batches_mix_prompts_and_keep_every_row_once():
    """`batching: shuffled` draws rows at random: the same number of batches as the grouped order (the
    schedule relies on it), every row once, and batches that mix rows of different prompts."""
    rows = []
    for prompt in ([7] * 20, [9] * 20):
        for length in range(16):
            ids = prompt + [3] * (length + 2) + [5, 2]
            rows.append(Encoded(ids, [IGNORE] * (len(ids) - 2) + [5, 2]))
    batches = lora.shuffled_batches(rows, 4, random.Random(0))
    assert sorted(id(e) for b in batches for e in b) == sorted(id(e) for e in rows)
    assert len(batches) == len(lora.length_batches(rows, 4, random.Random(0))) == 8
    assert any(len({e.input_ids[0] for e in batch}) == 2 for batch in batches)
    assert lora.shuffled_batches(rows, 4, random.Random(0)) == batches  # the seed decides the order


def test_a_warm_start_begins_from_the_given_adapter_and_refuses_another_shape(tmp_path):
    from safetensors.numpy import load_file

    def losses(name):
        return [json.loads(line)["loss"] for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]

    lora.train_lora(
        tiny_model(), 0, examples(), config(epochs=6), tmp_path / "first", log_path=tmp_path / "first.jsonl"
    )
    for name, init in (("fresh", None), ("warm", tmp_path / "first")):
        log = tmp_path / f"{name}.jsonl"
        lora.train_lora(tiny_model(), 0, examples(), config(epochs=1), tmp_path / name, log_path=log, init_adapter=init)
    # The warm start's first step is where the first training ended, not where a fresh LoRA begins.
    fresh, warm, first = losses("fresh")[0], losses("warm")[0], losses("first")
    assert abs(warm - first[-1]) < abs(warm - fresh) / 2, (fresh, warm, first)

    # At a learning rate too small to move them, the weights it saves are the ones it started from.
    lora.train_lora(
        tiny_model(),
        0,
        examples(),
        config(epochs=1, learning_rate=1e-12),
        tmp_path / "still",
        init_adapter=tmp_path / "first",
    )
    before = load_file(str(tmp_path / "first" / "adapter_model.safetensors"))
    after = load_file(str(tmp_path / "still" / "adapter_model.safetensors"))
    assert set(before) == set(after)
    assert all(abs(before[k] - after[k]).max() < 1e-6 for k in before)

    for other, fragment in ((config(r=8), "rank 4"), (config(target_modules=["q_proj"]), "other layers")):
        with pytest.raises(ConfigError, match=fragment):
            lora.train_lora(tiny_model(), 0, examples(), other, tmp_path / "other", init_adapter=tmp_path / "first")
    with pytest.raises(ConfigError, match="no trained adapter"):
        lora.train_lora(tiny_model(), 0, examples(), config(), tmp_path / "other", init_adapter=tmp_path / "none")
