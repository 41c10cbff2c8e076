"""Proof that the GGUF export is the trained adapter: llama.cpp (base + GGUF adapter) against PEFT.

For each prompt, PEFT's greedy continuation is the reference. llama.cpp then predicts the next token at
every position of that continuation (teacher forcing), and generates its own greedy continuation.
Reported: top-1 agreement over all positions, and the share of prompts whose greedy text matches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loraforge.runtime import LlamaClient, ServerConfig, make_server

THRESHOLD = 0.99


def peft_references(adapter_dir: Path, base: Path, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """PEFT's greedy continuation of each prompt, stopping at end of turn."""
    import torch
    from peft import PeftModel

    from loraforge.trainers.model_loading import load_base_model

    model, tokenizer = load_base_model(base)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    out = []
    with torch.no_grad():
        for ids in prompts:
            generated = model.generate(
                torch.tensor([ids]),
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = generated[0, len(ids) :].tolist()
            if tokenizer.eos_token_id in new:
                new = new[: new.index(tokenizer.eos_token_id) + 1]
            out.append(new)
    return out


async def llama_predictions(
    base: Path, gguf: Path, prompts: list[list[int]], references: list[list[int]], new_tokens: int
) -> tuple[list[list[int]], list[list[int]]]:
    """(next-token predictions along each reference, free greedy continuations) from llama.cpp."""
    config = ServerConfig(model_path=base, lora_adapters=[gguf], n_parallel=1, n_ctx=4096)
    forced, free = [], []
    async with make_server(config) as server:
        async with LlamaClient(server.base_url, concurrency=1, adapter_count=1) as client:
            for ids, reference in zip(prompts, references):
                forced.append(
                    [
                        (await client.next_tokens(ids + reference[:k], 1, adapter=0) or [-1])[0]
                        for k in range(len(reference))
                    ]
                )
                free.append(await client.next_tokens(ids, new_tokens, adapter=0))
    return forced, free


def compare(references: list[list[int]], forced: list[list[int]], free: list[list[int]], eos: int) -> dict[str, Any]:
    positions = sum(len(r) for r in references)
    agree = sum(a == b for r, f in zip(references, forced) for a, b in zip(r, f))

    def trim(tokens: list[int]) -> list[int]:
        return tokens[: tokens.index(eos)] if eos in tokens else tokens

    matches = sum(trim(r) == trim(f) for r, f in zip(references, free))
    return {
        "prompts": len(references),
        "positions": positions,
        "top1_agreement": agree / positions if positions else 0.0,
        "greedy_match": matches / len(references) if references else 0.0,
        "threshold": THRESHOLD,
        "passed": positions > 0 and agree / positions >= THRESHOLD,
    }


def check_fidelity(
    adapter_dir: Path, base: Path, gguf: Path, prompts: list[list[int]], eos: int, new_tokens: int = 16
) -> dict[str, Any]:
    import asyncio

    references = peft_references(adapter_dir, base, prompts, new_tokens)
    forced, free = asyncio.run(llama_predictions(base, gguf, prompts, references, new_tokens))
    return compare(references, forced, free, eos)
