"""What users get: the loop's adapter against the base model on requests that people wrote, for a tool set
with hand-written examples and for one without any.

    .venv/bin/python benchmarks/bench_quality.py --work /tmp/bench-quality

For each set, one `make run`-sized run (`loraforge run` with the defaults of `make run`), then
`loraforge eval` of the base model and of the run's final adapter on the set's human-written held-out
requests (which no run sees), through llama.cpp with the leaderboard's exact-match rules:

- api: examples/api-tools.json (12 tools, no examples) and benchmarks/data/heldout_api.jsonl (106 requests);
- assistant: examples/assistant-tools.yaml (5 tools with examples) and benchmarks/data/heldout_human.jsonl.

Reported per set: base and adapter exact match and tool-name accuracy, per-tool accuracy, failures by error
code, generation cost (teacher calls and seconds per verified example, from the runs' data reports) and
the run's wall time. Raw results: benchmarks/results/quality.json (each set also keeps its own file, so
the sets can be run one at a time with --sets).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from provenance import provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CLI = [sys.executable, "-m", "loraforge"]
SETS = {
    "api": (ROOT / "examples" / "api-tools.json", ROOT / "benchmarks" / "data" / "heldout_api.jsonl"),
    "assistant": (ROOT / "examples" / "assistant-tools.yaml", ROOT / "benchmarks" / "data" / "heldout_human.jsonl"),
}


def run(args: list[str]) -> float:
    started = time.monotonic()
    print("+ loraforge " + " ".join(args), flush=True)
    subprocess.run(CLI + args, check=True)
    return round(time.monotonic() - started, 1)


def generation_cost(run_dir: Path) -> dict:
    """Teacher calls and seconds per verified example, summed over the run's iterations."""
    calls = seconds = kept = 0
    for report in sorted(run_dir.glob("iteration_*/data_report.json")):
        data = json.loads(report.read_text())
        calls += data.get("teacher_calls") or 0
        seconds += data.get("seconds") or 0
        kept += data.get("accepted") or 0
    return {
        "verified_examples": kept,
        "teacher_calls": calls,
        "generation_seconds": round(seconds, 1),
        "teacher_calls_per_example": round(calls / kept, 2) if kept else None,
        "seconds_per_example": round(seconds / kept, 2) if kept else None,
        "examples_per_minute": round(60 * kept / seconds, 2) if seconds else None,
    }


def keep_predictions(name: str, eval_dir: Path) -> None:
    """Every model's answer to every human-written request, beside the figures, so that a failure can be
    read without re-running: results/quality_SET_predictions.jsonl, one row per (model, request)."""
    lines = []
    files = [("base", "predictions_base.jsonl"), ("adapter", "predictions.jsonl")]
    if not (eval_dir / files[0][1]).is_file():
        files = [("base", "predictions.jsonl")]  # no adapter: eval scored the base alone
    for model, file in files:
        path = eval_dir / file
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            lines += [json.dumps({"model": model, **row}) for row in rows]
    (RESULTS / f"quality_{name}_predictions.jsonl").write_text("".join(line + "\n" for line in lines))


def bench_set(name: str, work: Path, run_args: list[str], reuse: Path | None) -> dict:
    tools, human = SETS[name]
    run_dir = reuse or work / name / "run"
    seconds = None
    if reuse is None:
        seconds = run(["run", "--tools", str(tools), "--out", str(run_dir), "--quiet"] + run_args)
    final = run_dir / "final_adapter"
    out = work / name / "eval"
    args = ["eval", "--data", str(human), "--tools", str(tools), "--out", str(out), "--quiet"]
    run(args + (["--adapter", str(final)] if final.is_dir() else []))
    metrics = json.loads((out / "metrics.json").read_text())
    keep_predictions(name, out)
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()]
    keep = ("n", "exact_match", "tool_name_accuracy", "errors", "per_tool")
    return {
        "tools": str(tools.relative_to(ROOT)),
        "human_heldout": str(human.relative_to(ROOT)),
        "run_dir": str(run_dir),
        "run_seconds": seconds,
        "run_args": run_args,
        "iterations": len(history),
        "promoted": [h["iteration"] for h in history if h.get("promoted")],
        "synthetic_heldout": [
            {"iteration": h["iteration"], "adapter": h["adapter"], "base": h["base"]} for h in history
        ],
        "base": {k: metrics["base"].get(k) for k in keep},
        "adapter": {k: metrics["adapter"].get(k) for k in keep} if "adapter" in metrics else None,
        "generation": generation_cost(run_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["api", "assistant"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-quality"))
    parser.add_argument("--examples", type=int, default=40, help="first-iteration examples (make run: 40)")
    parser.add_argument("--iterations", type=int, default=3, help="iterations (make run: 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout-fraction", type=float, default=0.2, help="synthetic held-out share (default 0.2)")
    parser.add_argument("--time-budget", type=float, help="minutes each run may take (loraforge run --time-budget)")
    parser.add_argument("--config", type=Path, help="loraforge run --config FILE for every set")
    parser.add_argument("--reuse", nargs=2, action="append", metavar=("SET", "RUN_DIR"), default=[])
    args = parser.parse_args()
    reuse = {name: Path(folder) for name, folder in args.reuse}
    run_args = ["--examples", str(args.examples), "--iterations", str(args.iterations), "--seed", str(args.seed)]
    run_args += ["--heldout-fraction", str(args.heldout_fraction)]
    if args.time_budget:
        run_args += ["--time-budget", str(args.time_budget)]
    if args.config:
        run_args += ["--config", str(args.config)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    combined_path = RESULTS / "quality.json"
    combined = json.loads(combined_path.read_text()) if combined_path.is_file() else {}
    for name in args.sets:
        result = bench_set(name, args.work, run_args, reuse.get(name))
        result.update(provenance("bench_quality.py"))
        result["machine"] = {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}
        (RESULTS / f"quality_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        combined[name] = result
        combined_path.write_text(json.dumps(combined, indent=2) + "\n")
    print()
    print(
        "| set | model | exact match | tool-name accuracy | seconds per verified example | teacher calls per example |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.sets:
        result = combined[name]
        gen = result["generation"]
        for label in ("base", "adapter"):
            m = result[label]
            if not m:
                print(f"| {name} | {label} | no adapter promoted | | | |")
                continue
            cost = f"{gen['seconds_per_example']} | {gen['teacher_calls_per_example']}" if label == "adapter" else " | "
            print(f"| {name} | {label} | {m['exact_match']:.3f} ({m['n']}) | {m['tool_name_accuracy']:.3f} | {cost} |")
    print(f"\nraw results: {combined_path}")


if __name__ == "__main__":
    main()
