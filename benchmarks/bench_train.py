"""Training throughput: loraforge's loop against TRL's SFTTrainer with PEFT, side by side.

    .venv/bin/pip install -e '.[bench]'     # TRL is a benchmark-only extra
    .venv/bin/python benchmarks/bench_train.py --train 32 --heldout 16 --trials 3

The same work on both sides:
- model: the embedded SmolLM2-135M, dequantised, fp32, no gradient checkpointing on either side (TRL's
  SFTConfig turns it on by default; loraforge never uses it);
- LoRA r=16, alpha=32 on all seven projections, no dropout, AdamW, the same learning rate, batch size and
  epochs, and the same schedule: cosine from the learning rate to a 10% floor, no warm-up (loraforge's
  schedule; TRL runs it as `cosine_with_min_lr` with `min_lr_rate=0.1`);
- loss on the first assistant turn only (TRL's `completion_only_loss`), with TRL's padding-free batching,
  its own speed option for this case (packing would cut chats at the length limit);
- data shaped like generated data: each row shows the tools the generator would show (every tool in its
  `full_tool_list_rate` share of rows, otherwise the needed one plus distractors, in the file's order).
  The held-out rows use worked examples that no training row uses, so their calls never appear in training.

A third side, loraforge-shuffled, is loraforge with batches drawn at random as TRL draws them, instead of
rows that share a tools list batched together: it shows what that batching costs in held-out loss. A fourth,
loraforge-frozen-prompt, is loraforge with `prefix_gradients: false`: the tools list that a batch shares runs
once without gradients, and the adapter learns from the positions after it only. A fifth, loraforge-bf16,
is loraforge with the loop's default `dtype: auto`: bf16 autocast on a CPU that has it (the result records the
dtype). loraforge-bf16 against loraforge-shuffled is the loop's training today against the loop's training
before rows were batched by tools list and before autocast:

    .venv/bin/python benchmarks/bench_train.py --sides loraforge loraforge-shuffled loraforge-bf16 \
        --out benchmarks/results/train_loop.json

A sixth, loraforge-dropout, is loraforge-bf16 with LoRA dropout 0.05, the loop's default until it was set to 0
on this measurement:

    .venv/bin/python benchmarks/bench_train.py --sides loraforge-bf16 loraforge-dropout --epochs 3 \
        --out benchmarks/results/train_dropout.json

Trials alternate the order of the sides (TRL, loraforge, shuffled; then the reverse), each in its own process
so that peak memory is its own. Trial i seeds every side with i (the LoRA initialisation and the data
order), so that the held-out losses show how much a seed alone moves them. Reported per side: minimum and
median seconds and supervised tokens per second over the trials, peak RSS, held-out loss per trial and
their mean (the same loss function for every adapter), and the fraction of this machine's measured matmul
peak that loraforge reaches (the LM head counted only where loraforge runs it). Raw results, with the TRL,
transformers, torch and PEFT versions: benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from provenance import provenance

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "examples" / "assistant-tools.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "train.json"
# loraforge-shuffled is loraforge with batches drawn at random (`batching: shuffled`), as TRL draws them: it
# separates what batching rows by shared prompt costs in held-out loss from the rest of the trainer.
# loraforge-frozen-prompt runs the shared prompt without gradients (`prefix_gradients: false`).
# loraforge-bf16 is loraforge with `dtype: auto` (the loop's default): bf16 autocast where the CPU has it.
# loraforge-dropout is loraforge-bf16 with LoRA dropout 0.05 (the loop's default before it was set to 0).
# Each loraforge side is side_loraforge's defaults (shared prompt, fp32, no dropout) with these changes.
LORAFORGE_SIDES: dict[str, dict] = {
    "loraforge": {},
    "loraforge-shuffled": {"batching": "shuffled"},
    "loraforge-frozen-prompt": {"prefix_gradients": False},
    "loraforge-bf16": {"dtype": "auto"},
    "loraforge-dropout": {"dtype": "auto", "dropout": 0.05},
}
SIDES = ("trl", *LORAFORGE_SIDES)


def split_examples(tools) -> tuple[list, list]:
    """(training, held-out) pairs of (tool, worked example): each tool's last example is held out."""
    train = [(tool, example) for tool in tools for example in tool.examples[:-1]]
    heldout = [(tool, tool.examples[-1]) for tool in tools if len(tool.examples) > 1]
    return train, heldout


def chats(pool: list, count: int, seed: int) -> list[dict]:
    """Tool-calling chats from worked examples (no teacher needed), showing tools as the generator does."""
    from loraforge.generators import prompts
    from loraforge.generators.plan import GenerationPlan
    from loraforge.generators.toolcalls import call_message, present_tools, tool_message
    from loraforge.tools import load_tools
    from loraforge.tools.simulate import simulate_response

    tools = load_tools(TOOLS)
    full_rate = GenerationPlan().full_tool_list_rate
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
                "tools": present_tools(tools, [tool], 1, full_rate, rng),
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

    from loraforge.chat.format import ChatFormat, builtin_template
    from loraforge.models import resolve_model
    from loraforge.models.loading import hf_folder_for, load_base_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    folder = hf_folder_for(resolve_model(None))
    model, tokenizer = load_base_model(folder)
    from loraforge.tools import load_tools

    fmt = ChatFormat(builtin_template())
    train_pool, heldout_pool = split_examples(load_tools(TOOLS))
    train = [first_turn(fmt, row) for row in chats(train_pool, args.train, seed=1)]
    heldout = [first_turn(fmt, row) for row in chats(heldout_pool, args.heldout, seed=2)]
    return folder, model, tokenizer, train, heldout


def encode(tokenizer, pairs):
    from loraforge.trainers.formatting import encode_segments

    return [encode_segments(tokenizer, [(prompt, False), (completion, True)]) for prompt, completion in pairs]


def heldout_loss(peft_model, tokenizer, heldout, args) -> float:
    from loraforge.trainers.config import TrainConfig
    from loraforge.trainers.lora import evaluate_loss

    config = TrainConfig(batch_size=args.batch_size, dtype="float32")
    return evaluate_loss(peft_model, encode(tokenizer, heldout), config, tokenizer.pad_token_id, "cpu", None)


def side_loraforge(
    args, batching: str = "shared-prompt", prefix_gradients: bool = True, dtype: str = "float32", dropout: float = 0.0
) -> dict:
    from peft import PeftModel

    from loraforge.trainers.config import TrainConfig
    from loraforge.trainers.lora import autocast_dtype, train_lora

    folder, model, tokenizer, train, heldout = setup(args)
    head = model.get_input_embeddings().weight.numel()  # tied to the LM head
    body = sum(p.numel() for p in model.parameters()) - head
    encoded = encode(tokenizer, train)
    config = TrainConfig(
        r=16,
        alpha=32,
        dropout=dropout,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        warmup_steps=0,
        val_fraction=0.0,
        dtype=dtype,
        threads=args.threads,
        seed=args.seed,
        batching=batching,
        prefix_gradients=prefix_gradients,
    )
    out = Path(args.work) / "loraforge"
    start = time.perf_counter()
    result = train_lora(model, tokenizer.pad_token_id, encoded, config, out, checkpoint_every=1e9)
    seconds = time.perf_counter() - start
    from loraforge.models.loading import load_base_model

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
        "head_parameters": head,
        "body_parameters": body,
        "autocast": str(autocast_dtype(dtype, "cpu")),
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
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=0,
        gradient_checkpointing=False,
        padding_free=True,
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        max_length=None,  # padding-free without packing does not truncate (TRL refuses a limit); every row fits 1024
        packing=False,
        completion_only_loss=True,
        dataloader_num_workers=0,
        seed=args.seed,
        data_seed=args.seed,
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
    from loraforge.models.loading import load_base_model

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


def versions() -> dict[str, str]:
    names = ("trl", "transformers", "torch", "peft", "datasets")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def run_side(side: str, argv: list[str]) -> dict:
    command = [sys.executable, __file__, "--side", side] + argv
    done = subprocess.run(command, capture_output=True, text=True)
    line = next((out for out in done.stdout.splitlines() if out.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
    result = json.loads(line[7:])
    result["supervised_tokens_per_s"] = result["supervised_tokens"] / result["seconds"]
    return result


def summarise(trials: list[dict]) -> dict:
    seconds = [t["seconds"] for t in trials]
    speed = [t["supervised_tokens_per_s"] for t in trials]
    return {
        "seconds_min": min(seconds),
        "seconds_median": statistics.median(seconds),
        "supervised_tokens_per_s_max": max(speed),
        "supervised_tokens_per_s_median": statistics.median(speed),
        "heldout_loss": [t["heldout_loss"] for t in trials],
        "heldout_loss_mean": statistics.mean(t["heldout_loss"] for t in trials),
        "peak_rss_mib_max": max(t["peak_rss_mib"] for t in trials),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=32)
    parser.add_argument("--heldout", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trials", type=int, default=3, help="alternating trials per side")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)  # set per trial
    parser.add_argument("--work", default="/tmp/loraforge-bench-train")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--sides", nargs="+", choices=SIDES, default=list(SIDES), help="the sides to run (default: all of them)"
    )
    args = parser.parse_args()
    if args.side:
        if args.side == "trl":
            result = side_trl(args)
        else:
            result = side_loraforge(args, **LORAFORGE_SIDES[args.side])
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(result))
        return
    argv = sys.argv[1:]  # each side's process parses the same flags, plus its own --side and --seed
    chosen = [side for side in SIDES if side in args.sides]
    trials: dict[str, list[dict]] = {side: [] for side in chosen}
    for trial in range(args.trials):
        for side in chosen if trial % 2 == 0 else chosen[::-1]:
            trials[side].append(run_side(side, argv + ["--seed", str(trial)]))
            print(f"trial {trial + 1} {side}", json.dumps(trials[side][-1]), flush=True)
    peak = matmul_peak(args.threads)
    sides = {side: summarise(runs) for side, runs in trials.items()}

    def ratio(faster: str, slower: str) -> float | None:
        """Median supervised tokens per second of one side over another's, when both ran."""
        if faster not in sides or slower not in sides:
            return None
        return sides[faster]["supervised_tokens_per_s_median"] / sides[slower]["supervised_tokens_per_s_median"]

    summary = {
        **provenance("bench_train.py"),
        "args": {k: v for k, v in vars(args).items() if k not in ("side", "out")},
        "versions": versions(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "speedup_median": ratio("loraforge", "trl"),
        "speedup_min_seconds": sides["trl"]["seconds_min"] / sides["loraforge"]["seconds_min"]
        if {"trl", "loraforge"} <= set(sides)
        else None,
        "speedup_shuffled_median": ratio("loraforge-shuffled", "trl"),
        "speedup_frozen_prompt_median": ratio("loraforge-frozen-prompt", "trl"),
        "frozen_prompt_over_default_median": ratio("loraforge-frozen-prompt", "loraforge"),
        # The loop's training today (rows batched by shared tools list, bf16 autocast where the CPU has it)
        # against the loop's training before either lever (rows drawn at random, fp32).
        "shared_prompt_over_shuffled_median": ratio("loraforge", "loraforge-shuffled"),
        "bf16_over_fp32_median": ratio("loraforge-bf16", "loraforge"),
        "loop_today_over_shuffled_fp32_median": ratio("loraforge-bf16", "loraforge-shuffled"),
        "no_dropout_over_dropout_median": ratio("loraforge-bf16", "loraforge-dropout"),
        "matmul_peak_gflops": peak,
        "summary": sides,
        "trials": trials,
    }
    if "loraforge" in trials:
        # A frozen base costs about 4 flops per parameter per position it runs (forward, and the backward to
        # activations). The body runs at every position computed (a shared prefix once per batch, padding
        # included); loraforge runs the LM head only at supervised positions.
        fastest = min(trials["loraforge"], key=lambda t: t["seconds"])
        body, head = fastest["body_parameters"], fastest["head_parameters"]
        flops = 4 * (body * fastest["positions_run"] + head * fastest["supervised_tokens"])
        achieved = flops / fastest["seconds"] / 1e9
        summary.update(loraforge_effective_gflops=achieved, loraforge_fraction_of_peak=achieved / peak)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text(json.dumps(summary, indent=2) + "\n")
    temporary.replace(args.out)
    print(json.dumps({k: v for k, v in summary.items() if k != "trials"}, indent=2))


if __name__ == "__main__":
    main()
