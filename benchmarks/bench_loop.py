"""Does the loop earn its keep? A 3-iteration run against a 1-iteration run with the same number of
generated examples, both scored with the base model on human-written requests that no run has seen.

    .venv/bin/python benchmarks/bench_loop.py --examples 40 --work /tmp/bench-loop
    .venv/bin/python benchmarks/bench_loop.py --warm-start --skip-one --work /tmp/bench-loop-warm

The held-out set (benchmarks/data/heldout_human.jsonl) was written by hand for the example tools: casual
phrasing, typos, requests that need two calls, and requests that need no tool. Every model is scored by
`loraforge eval` through llama.cpp with the leaderboard's exact-match rules.
Raw results: benchmarks/results/loop.json, or loop_warm_start.json with --warm-start (and a copy in the
--work folder).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from provenance import provenance

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "examples" / "assistant-tools.yaml"
HUMAN = ROOT / "benchmarks" / "data" / "heldout_human.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "loop.json"
CLI = [sys.executable, "-m", "loraforge"]


def run(args: list[str]) -> float:
    started = time.monotonic()
    print("+ loraforge " + " ".join(args), flush=True)
    subprocess.run(CLI + args, check=True)
    return time.monotonic() - started


def generated(run_dir: Path) -> int:
    return sum(
        sum(1 for line in path.read_text().splitlines() if line.strip())
        for path in run_dir.glob("iteration_*/data.jsonl")
    )


def evaluate(run_dir: Path, out: Path) -> dict:
    final = run_dir / "final_adapter"
    adapter = final if final.is_dir() else None
    args = ["eval", "--data", str(HUMAN), "--tools", str(TOOLS), "--out", str(out), "--quiet"]
    run(args + (["--adapter", str(adapter)] if adapter else []))
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=40, help="first-iteration examples of the 3-iteration run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-loop"))
    parser.add_argument("--three", type=Path, help="reuse a finished 3-iteration run folder (e.g. runs/demo)")
    parser.add_argument(
        "--skip-one", action="store_true", help="score only the loop's adapter and the base (no 1-iteration run)"
    )
    parser.add_argument(
        "--warm-start", action="store_true", help="the loop's iterations 2 and 3 start from the best adapter"
    )
    parser.add_argument("--out", type=Path, help="raw results file (default: results/loop.json, loop_warm_start.json)")
    args = parser.parse_args()
    results = args.out or (RESULTS.with_name("loop_warm_start.json") if args.warm_start else RESULTS)
    args.work.mkdir(parents=True, exist_ok=True)
    common = ["--tools", str(TOOLS), "--seed", str(args.seed), "--quiet"]

    three = args.three or args.work / "three"
    seconds = {"three": None, "one": None}
    if args.three is None:
        seconds["three"] = run(
            ["run", "--out", str(three), "--examples", str(args.examples), "--iterations", "3"]
            + common
            + (["--warm-start"] if args.warm_start else [])
        )
    total = generated(three)
    one = args.work / "one"
    runs = {"three": three}
    if not args.skip_one:
        # Same number of generated examples; a held-out share as small as the loop's first iteration keeps.
        held = sum(1 for line in (three / "heldout.jsonl").read_text().splitlines() if line.strip())
        fraction = f"{max(0.05, held / total):.3f}"
        seconds["one"] = run(
            ["run", "--out", str(one), "--examples", str(total), "--iterations", "1", "--heldout-fraction", fraction]
            + common
        )
        if not (one / "config.json").is_file():
            raise SystemExit("the 1-iteration run did not finish")
        runs["one"] = one

    scores = {name: evaluate(folder, args.work / f"eval_{name}") for name, folder in runs.items()}
    history = [json.loads(line) for line in (three / "history.jsonl").read_text().splitlines() if line.strip()]
    state = json.loads((three / "state.json").read_text())
    result = {
        "generated_examples": {"three": total, "one": generated(one) if "one" in runs else None},
        "iterations_run": len([h for h in history if "promoted" in h]),
        "human_heldout_rows": sum(1 for _ in HUMAN.open()),
        "base": scores["three"]["base"],
        "three_iterations": scores["three"].get("adapter"),
        "one_iteration": scores["one"].get("adapter") if "one" in scores else None,
        "seconds": seconds,
        "loop_seconds_by_iteration": state.get("seconds"),
        "phase_seconds_by_iteration": state.get("phase_seconds"),
        "epochs_by_iteration": {
            n: json.loads((three / f"iteration_{n}" / "plan.json").read_text())["epochs"]
            for n in state.get("seconds", {})
            if (three / f"iteration_{n}" / "plan.json").is_file()
        },
        "warm_start": args.warm_start,
    }
    result.update(provenance("bench_loop.py"))
    results.parent.mkdir(parents=True, exist_ok=True)
    (args.work / "bench_loop.json").write_text(json.dumps(result, indent=2))
    results.with_suffix(".tmp").write_text(json.dumps(result, indent=2) + "\n")
    os.replace(results.with_suffix(".tmp"), results)
    print()
    print("| model | exact match | tool-name accuracy | generated examples |")
    print("|---|---|---|---|")
    for name, metrics, count in (
        ("base SmolLM2-135M", result["base"], "-"),
        ("1 iteration", result["one_iteration"], total),
        ("3 iterations (loop)", result["three_iterations"], total),
    ):
        if metrics:
            print(f"| {name} | {metrics['exact_match']:.3f} | {metrics['tool_name_accuracy']:.3f} | {count} |")
        else:
            print(f"| {name} | no adapter promoted | | {count} |")
    print(f"\n{result['human_heldout_rows']} human-written requests; raw results in {results}")


if __name__ == "__main__":
    main()
