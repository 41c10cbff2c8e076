"""Verified tool-calling examples per minute: loraforge's concurrent generator against a sequential client.

    .venv/bin/python benchmarks/bench_generate.py --n 40 --trials 2

Both sides run the same generation pipeline (same prompts, checks and seeds) against the same llama.cpp
server and model, in one process; the only difference is how requests are issued. The sequential client
sends one request at a time, as a plain script would; loraforge keeps every server slot busy. Trials
alternate which side goes first (A B, B A, ...), so a warm cache or a busy machine favours neither.
Raw results: benchmarks/results/generate.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from provenance import provenance

from loraforge.generators.plan import GenerationPlan
from loraforge.generators.runner import generate_to_file
from loraforge.generators.toolcalls import ToolCallGenerator
from loraforge.models import resolve_model
from loraforge.runtime import LlamaClient, ServerConfig, make_server
from loraforge.tools import load_tools

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "generate.json"


async def measure(
    server_url: str, api_key: str | None, tools, n: int, concurrency: int, slots: int, seed: int, out: Path
) -> dict:
    async with LlamaClient(server_url, concurrency=concurrency, affinity_slots=slots, api_key=api_key) as client:
        generator = ToolCallGenerator(tools, client, GenerationPlan(), seed=seed)
        start = time.perf_counter()
        report = await generate_to_file(generator, out, n)
        seconds = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "slot_affinity": bool(slots),
        "verified": report["kept_in_file"],
        "seconds": round(seconds, 1),
        "per_minute": round(report["kept_in_file"] / seconds * 60, 2),
        "teacher_calls": report["teacher_calls"],
        "rejected": sum(report["rejected"].values()),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=4, help="loraforge's concurrent requests")
    parser.add_argument("--slots", type=int, default=10, help="server slots (prompt families pinned to slots)")
    parser.add_argument("--tools", default="examples/assistant-tools.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None)
    parser.add_argument("--trials", type=int, default=2, help="pairs of runs, alternating which side goes first")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    tools = load_tools(args.tools)
    config = ServerConfig(model_path=resolve_model(args.model), n_parallel=args.slots, n_ctx=1536 * args.slots)
    sides = {"sequential": (1, 0), "loraforge": (args.parallel, args.slots)}
    trials: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, make_server(config) as server:
        for trial in range(args.trials):
            order = list(sides) if trial % 2 == 0 else list(reversed(sides))
            for label in order:
                out = Path(tmp) / f"{label}-{trial}.jsonl"
                key = getattr(server, "api_key", None)  # the server loraforge starts takes a per-run key
                result = await measure(server.base_url, key, tools, args.n, *sides[label], args.seed, out)
                trials.append({"trial": trial, "side": label, **result})
                print(label, json.dumps(result), flush=True)
    summary: dict = {
        **provenance("bench_generate.py"),
        "n": args.n,
        "tools": args.tools,
        "parallel": args.parallel,
        "slots": args.slots,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "trials": trials,
    }
    for label in sides:
        rates = [t["per_minute"] for t in trials if t["side"] == label]
        summary[label] = {"per_minute_min": min(rates), "per_minute_median": statistics.median(rates)}
    summary["speedup_median"] = round(
        summary["loraforge"]["per_minute_median"] / summary["sequential"]["per_minute_median"], 2
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print(json.dumps({k: summary[k] for k in ("sequential", "loraforge", "speedup_median")}, indent=2))
    print(f"raw results: {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
