"""Verified tool-calling examples per minute: loraforge's concurrent generator against a sequential client.

    .venv/bin/python benchmarks/bench_generate.py --n 40

Both sides run the same generation pipeline (same prompts, checks and seeds) against the same llama.cpp
server and model, in one process; the only difference is how requests are issued. The sequential client
sends one request at a time, as a plain script would; loraforge keeps every server slot busy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from loraforge.generators.plan import GenerationPlan
from loraforge.generators.runner import generate_to_file
from loraforge.generators.toolcalls import ToolCallGenerator
from loraforge.models import resolve_model
from loraforge.runtime import LlamaClient, ServerConfig, make_server
from loraforge.tools import load_tools


async def measure(server_url: str, tools, n: int, concurrency: int, slots: int, seed: int, out: Path) -> dict:
    async with LlamaClient(server_url, concurrency=concurrency, affinity_slots=slots) as client:
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
    args = parser.parse_args()
    tools = load_tools(args.tools)
    config = ServerConfig(model_path=resolve_model(args.model), n_parallel=args.slots, n_ctx=1536 * args.slots)
    results = {}
    with tempfile.TemporaryDirectory() as tmp, make_server(config) as server:
        for label, concurrency, slots in (("sequential", 1, 0), ("loraforge", args.parallel, args.slots)):
            out = Path(tmp) / f"{label}.jsonl"
            results[label] = await measure(server.base_url, tools, args.n, concurrency, slots, args.seed, out)
            print(label, json.dumps(results[label]), flush=True)
    speedup = results["loraforge"]["per_minute"] / results["sequential"]["per_minute"]
    summary = {"n": args.n, "parallel": args.parallel, "slots": args.slots, "speedup": round(speedup, 2), **results}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
