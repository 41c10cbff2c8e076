"""Proof that the GGUF export is the trained adapter: llama.cpp (base + GGUF adapter) against PEFT.

For each prompt, PEFT's greedy continuation is the reference. llama.cpp predicts the next token at every
position of that continuation (teacher forcing) and generates its own greedy continuation. Two gates:

1. Top-1 agreement along the reference. llama.cpp runs the quantised base (e.g. Q4_1 weights with 8-bit
   activations in its dot products) while PyTorch runs the same weights dequantised, so where PyTorch's two
   best tokens are nearly tied the choice can flip with no error in the adapter. A flip counts as a near tie
   when PyTorch scores llama.cpp's token within `NEAR_TIE_LOGITS` of its own; any other flip counts against
   the export. At least `THRESHOLD` of the positions must agree, counting near ties.
2. Log-probability error. At each position, llama.cpp's log-probabilities of its likeliest tokens are
   compared with PyTorch's. The same comparison with the adapter switched off on both sides measures the
   quantisation noise of the base itself; the adapter's error may be at most `NOISE_FACTOR` times that
   (or `NOISE_FLOOR`, for bases with almost no quantisation noise). A wrong tensor layout that leaves the
   top-1 token intact still shows up here.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loraforge.errors import ServerError
from loraforge.runtime import LlamaClient, ServerConfig, make_server

THRESHOLD = 0.99
NEAR_TIE_LOGITS = 0.5
NOISE_FACTOR = 2.0
NOISE_FLOOR = 0.02
TOP_LOGPROBS = 5

Candidates = dict[int, float]  # token id -> log-probability, llama.cpp's likeliest tokens at one position


@dataclass
class Reference:
    """PEFT's greedy continuation of one prompt, with PyTorch's log-probabilities along it."""

    tokens: list[int]
    logprobs: Any  # torch.Tensor [len(tokens), vocab], adapter on
    base_logprobs: Any  # the same positions with the adapter off

    def margin(self, position: int, token: int) -> float:
        """How much PyTorch prefers its own token over `token` at `position`, in logits."""
        if token < 0 or token >= self.logprobs.shape[-1]:
            return float("inf")
        row = self.logprobs[position]
        return float(row[self.tokens[position]] - row[token])


def logprob_error(candidates: list[Candidates], logprobs: Any) -> list[float]:
    """Per position: mean |llama.cpp - PyTorch| log-probability over llama.cpp's likeliest tokens."""
    errors = []
    for position, found in enumerate(candidates):
        if found:
            errors.append(sum(abs(lp - float(logprobs[position][t])) for t, lp in found.items()) / len(found))
    return errors


def peft_references(adapter_dir: Path, base: Path, prompts: list[list[int]], new_tokens: int) -> list[Reference]:
    """PEFT's greedy continuation of each prompt (stopping at end of turn), with log-probabilities."""
    import torch
    from peft import PeftModel

    from loraforge.models.loading import load_base_model

    model, tokenizer = load_base_model(base)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    out = []
    with torch.no_grad():
        for ids in prompts:
            # The scores of the greedy steps are the adapter's log-probabilities along the continuation, so
            # only the adapter-off side needs a second pass (and only the continuation's logits from it).
            generated = model.generate(
                torch.tensor([ids]),
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                return_dict_in_generate=True,
                output_logits=True,
            )
            new = generated.sequences[0, len(ids) :].tolist()
            if tokenizer.eos_token_id in new:
                new = new[: new.index(tokenizer.eos_token_id) + 1]
            with_adapter = torch.cat(generated.logits[: len(new)]).float().log_softmax(-1)
            with model.disable_adapter():
                # The last len(new) + 1 positions predict the continuation's tokens (and one past it).
                logits = model(torch.tensor([ids + new]), logits_to_keep=len(new) + 1).logits
            without = logits[0, :-1].float().log_softmax(-1)
            out.append(Reference(new, with_adapter, without))
    return out


async def forced_predictions(
    client: LlamaClient, prompt: list[int], reference: list[int], adapter: int | None
) -> tuple[list[int], list[Candidates]]:
    """llama.cpp's top-1 token and likeliest tokens at every position of `reference`, given the reference
    before it.

    Greedy generation agrees with teacher forcing up to its first disagreement, so one request covers every
    position up to and including the next disagreement: at most one request per disagreement, plus one.
    """
    predicted: list[int] = []
    candidates: list[Candidates] = []
    while len(predicted) < len(reference):
        done = len(predicted)
        steps = await client.next_tokens_with_logprobs(
            prompt + reference[:done], len(reference) - done, adapter=adapter, top=TOP_LOGPROBS
        )
        if not steps:
            predicted.append(-1)
            candidates.append({})
            continue
        for token, found in steps:
            predicted.append(token)
            candidates.append(found)
            if token != reference[len(predicted) - 1]:
                break
    return predicted[: len(reference)], candidates[: len(reference)]


@dataclass
class LlamaSide:
    forced: list[list[int]]  # adapter on, along each reference
    candidates: list[list[Candidates]]  # adapter on
    base_candidates: list[list[Candidates]]  # adapter off, along the same references
    free: list[list[int]]  # adapter on, greedy from the prompt


async def llama_side(base: Path, gguf: Path, prompts: list[list[int]], references: list[list[int]], new_tokens: int):
    """Everything the check needs from one llama.cpp server holding the exported adapter."""
    config = ServerConfig(model_path=base, lora_adapters=[gguf], n_parallel=1, n_ctx=4096)
    side = LlamaSide([], [], [], [])
    async with make_server(config) as server:
        async with server.client(concurrency=1, adapter_count=1) as client:
            for ids, reference in zip(prompts, references):
                forced, candidates = await forced_predictions(client, ids, reference, adapter=0)
                side.forced.append(forced)
                side.candidates.append(candidates)
                side.free.append(await client.next_tokens(ids, new_tokens, adapter=0))
            for ids, reference in zip(prompts, references):  # adapter off: the base's own noise
                side.base_candidates.append((await forced_predictions(client, ids, reference, adapter=None))[1])
    return side


def compare(
    references: list[list[int]],
    forced: list[list[int]],
    free: list[list[int]],
    eos: int,
    margins: list[list[float]] | None = None,
    errors: list[float] | None = None,
    base_errors: list[float] | None = None,
) -> dict[str, Any]:
    """The report. `margins[i][k]`: PyTorch's preference for its token over llama.cpp's, in logits;
    `errors`/`base_errors`: per-position log-probability errors with the adapter on and off."""
    positions = sum(len(r) for r in references)
    agree = near = 0
    ties = []
    for i, (reference, predicted) in enumerate(zip(references, forced)):
        for k, (a, b) in enumerate(zip(reference, predicted)):
            if a == b:
                agree += 1
            elif margins is not None and margins[i][k] <= NEAR_TIE_LOGITS:
                near += 1
                ties.append({"prompt": i, "position": k, "reference": a, "llama": b, "margin": margins[i][k]})

    def trim(tokens: list[int]) -> list[int]:
        return tokens[: tokens.index(eos)] if eos in tokens else tokens

    matches = sum(trim(r) == trim(f) for r, f in zip(references, free))
    within = (agree + near) / positions if positions else 0.0
    report: dict[str, Any] = {
        "prompts": len(references),
        "positions": positions,
        "top1_agreement": agree / positions if positions else 0.0,
        "top1_agreement_near_ties": within,
        "near_ties": ties,
        "near_tie_logits": NEAR_TIE_LOGITS,
        "greedy_match": matches / len(references) if references else 0.0,
        "threshold": THRESHOLD,
    }
    passed = positions > 0 and within >= THRESHOLD
    if errors and base_errors:
        report["logprob_error"] = statistics.fmean(errors)
        report["base_logprob_error"] = statistics.fmean(base_errors)
        report["logprob_error_limit"] = max(NOISE_FACTOR * report["base_logprob_error"], NOISE_FLOOR)
        passed = passed and report["logprob_error"] <= report["logprob_error_limit"]
    report["passed"] = passed
    return report


def check_fidelity(
    adapter_dir: Path,
    base: Path,
    gguf: Path,
    prompts: list[list[int]],
    eos: int,
    new_tokens: int = 16,
    references: list[Reference] | None = None,
) -> dict[str, Any]:
    """Whether llama.cpp with `gguf` reproduces PEFT's adapter on `prompts`. `references`, PEFT's side from
    `peft_references` on the same prompts, spares loading and running the model again for a second export."""
    import asyncio

    if references is None:
        references = peft_references(adapter_dir, base, prompts, new_tokens)
    tokens = [r.tokens for r in references]
    side = asyncio.run(llama_side(base, gguf, prompts, tokens, new_tokens))
    margins = [[ref.margin(k, t) for k, t in enumerate(pred)] for ref, pred in zip(references, side.forced)]
    errors = [e for ref, c in zip(references, side.candidates) for e in logprob_error(c, ref.logprobs)]
    base_errors = [e for ref, c in zip(references, side.base_candidates) for e in logprob_error(c, ref.base_logprobs)]
    missing = sum(1 for per_prompt in side.candidates + side.base_candidates for found in per_prompt if not found)
    if not errors or not base_errors or missing:
        # Without them the log-probability gate would silently drop out (or thin out) and top-1 would decide.
        raise ServerError(
            f"llama.cpp returned no top_logprobs at {missing or 'any'} of the positions of the fidelity check, "
            "so the export cannot be proven.",
            fix="Use a llama.cpp server that returns completion_probabilities (the embedded one does), or skip "
            "the check with `loraforge export --no-check`.",
        )
    return compare(tokens, side.forced, side.free, eos, margins, errors, base_errors)
