"""Training throughput: loraforge's loop against TRL's SFTTrainer with PEFT, side by side.

    .venv/bin/pip install -e '.[bench]'     # TRL is a benchmark-only extra
    .venv/bin/python benchmarks/bench_train.py --train 64 --heldout 16

Same model (the embedded SmolLM2-135M, dequantised), same data (tool-calling chats whose system prompt
lists every tool), same hyperparameters (LoRA r=16, alpha=32 on all seven projections, AdamW, the same
learning rate, batch size and epochs, fp32). Each side runs in its own process so that peak memory is its
own. Reported: supervised tokens per second, peak RSS, held-out loss (the same loss function for both
adapters) and the fraction of this machine's measured matmul peak that loraforge reaches.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "examples" / "assistant-tools.yaml"


def chats(count: int, seed: int) -> list[dict]:
    """Tool-calling chats built from the tools file's worked examples (no teacher needed), all tools shown."""
    from loraforge.generators import prompts
    from loraforge.generators.toolcalls import call_message, tool_message
    from loraforge.tools import load_tools
    from loraforge.tools.simulate import simulate_response

    tools = load_tools(TOOLS)
    listed = [t.to_openai() for t in tools]
    pool = [(tool, example) for tool in tools for example in tool.examples]
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        tool, example = pool[index % len(pool)]
        request = prompts.vary_register(example.request, rng)
        result = simulate_response(tool, example.arguments, seed * 1000 + index)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": request},
                    call_message([(tool.name, example.arguments)]),
                    tool_message(result),
                    {"role": "assistant", "content": prompts.fallback_answer(tool, result)},
                ],
                "tools": listed,
            }
        )
    return rows


def first_turn(fmt, row: dict) -> tuple[str, str]:
    """(prompt, completion) of the first assistant turn: what both trainers learn."""
    prompt = fmt.render(row["messages"][:1], row["tools"], add_generation_prompt=True)
    full = fmt.render(row["messages"][:2], row["tools"])
    turn = full[len(prompt) :]
    return prompt, turn[: turn.index(fmt.eos_token) + len(fmt.eos_token)]


def setup(args):
    import torch

    from loraforge.models import resolve_model
    from loraforge.trainers.chat_format import ChatFormat, builtin_template
    from loraforge.trainers.model_loading import hf_folder_for, load_base_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    folder = hf_folder_for(resolve_model(None))
    model, tokenizer = load_base_model(folder)
    fmt = ChatFormat(builtin_template())
    train = [first_turn(fmt, row) for row in chats(args.train, seed=1)]
    heldout = [first_turn(fmt, row) for row in chats(args.heldout, seed=2)]
    return folder, model, tokenizer, train, heldout


def encode(tokenizer, pairs):
    from loraforge.trainers.formatting import encode_segments

    return [encode_segments(tokenizer, [(prompt, False), (completion, True)]) for prompt, completion in pairs]


def heldout_loss(peft_model, tokenizer, heldout, args) -> float:
    from loraforge.trainers.config import TrainConfig
    from loraforge.trainers.lora import evaluate_loss

    config = TrainConfig(batch_size=args.batch_size, dtype="float32")
    return evaluate_loss(peft_model, encode(tokenizer, heldout), config, tokenizer.pad_token_id, "cpu", None)


def side_loraforge(args) -> dict:
    from peft import PeftModel

    from loraforge.trainers.config import TrainConfig
    from loraforge.trainers.lora import train_lora

    folder, model, tokenizer, train, heldout = setup(args)
    encoded = encode(tokenizer, train)
    config = TrainConfig(
        r=16,
        alpha=32,
        dropout=0.0,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        warmup_steps=0,
        val_fraction=0.0,
        dtype="float32",
        threads=args.threads,
    )
    out = Path(args.work) / "loraforge"
    start = time.perf_counter()
    result = train_lora(model, tokenizer.pad_token_id, encoded, config, out, checkpoint_every=1e9)
    seconds = time.perf_counter() - start
    from loraforge.trainers.model_loading import load_base_model

    base, _ = load_base_model(folder)
    loss = heldout_loss(PeftModel.from_pretrained(base, str(out)), tokenizer, heldout, args)
    supervised = sum(e.supervised for e in encoded) * args.epochs
    return {
        "seconds": seconds,
        "supervised_tokens": supervised,
        "heldout_loss": loss,
        "steps": result.steps,
        "tokens_seen": sum(len(e.input_ids) for e in encoded) * args.epochs,
        "positions_run": result.positions_run,
    }


def side_trl(args) -> dict:
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from trl import SFTConfig, SFTTrainer

    from loraforge.trainers.config import DEFAULT_TARGETS

    folder, model, tokenizer, train, heldout = setup(args)
    data = Dataset.from_list([{"prompt": p, "completion": c} for p, c in train])
    out = Path(args.work) / "trl"
    config = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        max_length=1024,
        packing=False,
        completion_only_loss=True,
        dataloader_num_workers=0,
        seed=0,
    )
    peft_config = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0, target_modules=DEFAULT_TARGETS, task_type="CAUSAL_LM"
    )
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=data, processing_class=tokenizer, peft_config=peft_config
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.model.save_pretrained(out)
    from loraforge.trainers.model_loading import load_base_model

    base, _ = load_base_model(folder)
    loss = heldout_loss(PeftModel.from_pretrained(base, str(out)), tokenizer, heldout, args)
    supervised = sum(e.supervised for e in encode(tokenizer, train)) * args.epochs
    return {
        "seconds": seconds,
        "supervised_tokens": supervised,
        "heldout_loss": loss,
        "steps": trainer.state.global_step,
    }


def matmul_peak(threads: int) -> float:
    """fp32 GFLOP/s of a large square matmul: this machine's practical peak."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        a @ b
    start, runs = time.perf_counter(), 10
    for _ in range(runs):
        a @ b
    return 2 * 2048**3 * runs / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=64)
    parser.add_argument("--heldout", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--side", choices=["trl", "loraforge"], help=argparse.SUPPRESS)
    parser.add_argument("--work", default="/tmp/loraforge-bench-train")
    args = parser.parse_args()
    if args.side:
        result = (side_trl if args.side == "trl" else side_loraforge)(args)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(result))
        return
    results = {}
    for side in ("trl", "loraforge"):
        command = [sys.executable, __file__, "--side", side] + sys.argv[1:]
        done = subprocess.run(command, capture_output=True, text=True)
        line = next((out for out in done.stdout.splitlines() if out.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
        results[side] = json.loads(line[7:])
        results[side]["supervised_tokens_per_s"] = results[side]["supervised_tokens"] / results[side]["seconds"]
        print(side, json.dumps(results[side]), flush=True)
    peak = matmul_peak(args.threads)
    # A frozen base costs about 4 flops per parameter per position run (forward, and the backward to
    # activations). Positions are counted as computed: a shared prefix once per batch, padding included.
    achieved = 4 * 134.5e6 * results["loraforge"]["positions_run"] / results["loraforge"]["seconds"] / 1e9
    summary = {
        "args": {k: v for k, v in vars(args).items() if k != "side"},
        "speedup_supervised_tokens_per_s": results["loraforge"]["supervised_tokens_per_s"]
        / results["trl"]["supervised_tokens_per_s"],
        "matmul_peak_gflops": peak,
        "loraforge_effective_gflops": achieved,
        "loraforge_fraction_of_peak": achieved / peak,
        **results,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
