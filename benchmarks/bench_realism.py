"""Do generated requests read like people? 100 random requests from a generated data file, checked with
rules written here, apart from the generator's own checks:

- no request copies 7 consecutive words of a tool's or a parameter's description;
- no request prints a parameter's name as a label before its value ("volume 80", "unit: celsius");
- at least 95% of the argument values are plausible for their parameter (inside the schema's range and
  any range stated in the description, the right shape for an e-mail, phone, date or time, no placeholder
  words, no tool or parameter names inside a value);
- every tool holds at least 5% of the calls.

    .venv/bin/python benchmarks/bench_realism.py --tools examples/api-tools.json --n 150

generates N examples with `loraforge generate` (timed), or checks an existing file with `--data FILE`, and
writes benchmarks/results/realism_<tools>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from provenance import commit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PLACEHOLDERS = {"example", "sample", "string", "value", "test", "foo", "bar", "lorem", "ipsum", "placeholder", "todo"}


def load_tools(path: Path) -> dict[str, dict]:
    spec = yaml.safe_load(path.read_text())
    items = spec.get("tools", spec) if isinstance(spec, dict) else spec
    return {t.get("function", t)["name"]: t.get("function", t) for t in items}


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def copies(request: str, texts: list[str], n: int = 7) -> bool:
    have = " " + " ".join(words(request)) + " "
    for text in texts:
        w = words(text)
        if any(" " + " ".join(w[i : i + n]) + " " in have for i in range(len(w) - n + 1)):
            return True
    return False


def label_leak(request: str, key: str, value) -> bool:
    label = key.replace("_", " ").lower()
    if len(label) <= 2 or isinstance(value, (bool, dict, list)):
        return False
    return bool(re.search(rf"\b{re.escape(label)}\s*[:=]?\s*{re.escape(str(value).lower())}", request.lower()))


def description_range(description: str) -> tuple[float | None, float | None]:
    text = description.lower()
    for pattern in (r"between\s+(-?[\d.]+)\s+and\s+(-?[\d.]+)", r"(-?\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(-?\d+(?:\.\d+)?)"):
        match = re.search(pattern, text)
        if match and float(match.group(1)) < float(match.group(2)):
            return float(match.group(1)), float(match.group(2))
    match = re.search(r"(?:up to|at most|maximum)\s+(\d+(?:\.\d+)?)", text)
    return None, float(match.group(1)) if match else None


def implausible(key: str, value, schema: dict, tool_name: str) -> str | None:
    """Why a value would not come from a user, or None. Rules written for this benchmark only."""
    description = str(schema.get("description", ""))
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        low, high = description_range(description)
        for bound in ("minimum", "exclusiveMinimum"):
            low = schema.get(bound, low)
        for bound in ("maximum", "exclusiveMaximum"):
            high = schema.get(bound, high)
        if low is not None and value < low or high is not None and value > high:
            return f"{value} outside {low}..{high}"
        if value != 0 and abs(value) < 1e-6:
            return "tiny number"
        return None
    if isinstance(value, list):
        return next((p for p in (implausible(key, v, schema.get("items", {}), tool_name) for v in value) if p), None)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return next((p for k, v in value.items() if (p := implausible(k, v, props.get(k, {}), tool_name))), None)
    text = str(value)
    if not text.strip():
        return "empty"
    if "enum" in schema:
        return None if value in schema["enum"] else "not in enum"
    if set(words(text)) & PLACEHOLDERS:
        return "placeholder word"
    if tool_name.lower() in text.lower():
        return "names the tool"
    name = key.lower()
    if "email" in name or schema.get("format") == "email":
        return None if re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", text) else "not an e-mail"
    if "phone" in name:
        return None if len(re.sub(r"\D", "", text)) >= 7 else "not a phone number"
    if schema.get("format") == "date" or "yyyy-mm-dd" in description.lower():
        return None if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else "not a date"
    if "hh:mm" in description.lower():
        return None if re.fullmatch(r"\d{2}:\d{2}", text) else "not a time"
    if "_" in text and not re.search(r"command|path|file|url|id", name):
        return "an identifier, not words"
    if len(text) > 160:
        return "too long"
    return None


def user_text(row: dict) -> str:
    return next((m.get("content") or "" for m in row["messages"] if m["role"] == "user"), "")


def calls(row: dict) -> list[dict]:
    return [
        c.get("function", c) for m in row["messages"] if m["role"] == "assistant" for c in (m.get("tool_calls") or [])
    ]


def check(tools: dict[str, dict], rows: list[dict], sample: int, seed: int) -> dict:
    rng = random.Random(seed)
    picked = rng.sample(rows, k=min(sample, len(rows)))
    copied, leaks, values_total, bad = [], [], 0, []
    for row in picked:
        text = user_text(row)
        for call in calls(row):
            tool = tools.get(call["name"], {})
            props = tool.get("parameters", {}).get("properties", {})
            texts = [tool.get("description", "")] + [str(p.get("description", "")) for p in props.values()]
            if copies(text, texts):
                copied.append(text)
            for key, value in (call.get("arguments") or {}).items():
                values_total += 1
                if label_leak(text, key, value):
                    leaks.append(text)
                why = implausible(key, value, props.get(key, {}), call["name"])
                if why:
                    bad.append({"request": text, "tool": call["name"], "parameter": key, "value": value, "why": why})
    counts = {name: 0 for name in tools}
    for row in rows:
        for call in calls(row):
            if call["name"] in counts:
                counts[call["name"]] += 1
    total = sum(counts.values()) or 1
    shares = {name: round(c / total, 4) for name, c in counts.items()}
    plausible = 1 - len(bad) / values_total if values_total else 1.0
    return {
        "rows": len(rows),
        "sampled_rows": len(picked),
        "description_copies": len(copied),
        "name_leaks": len(leaks),
        "values_checked": values_total,
        "plausible_share": round(plausible, 4),
        "implausible": bad,
        "copied_samples": copied[:10],
        "leak_samples": leaks[:10],
        "calls_per_tool": counts,
        "share_per_tool": shares,
        "min_share": min(shares.values()) if shares else 0.0,
        "passed": {
            "no_description_copies": not copied,
            "no_name_leaks": not leaks,
            "plausible_95": plausible >= 0.95,
            "every_tool_5_percent": bool(shares) and min(shares.values()) >= 0.05,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=Path, default=ROOT / "examples" / "api-tools.json")
    parser.add_argument("--data", type=Path, help="check this data file instead of generating one")
    parser.add_argument("--n", type=int, default=150, help="examples to generate")
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-realism"))
    parser.add_argument(
        "--outside-check",
        type=Path,
        help="an outside checker run as `python CHECK TOOLS DATA SECONDS` (e.g. ../shared/tools/check_realism.py); "
        "its last line is kept in the results file",
    )
    args = parser.parse_args()
    tools = load_tools(args.tools)
    seconds = None
    data = args.data
    if data is None:
        args.work.mkdir(parents=True, exist_ok=True)
        data = args.work / f"{args.tools.stem}.jsonl"
        data.unlink(missing_ok=True)
        command = [sys.executable, "-m", "loraforge", "generate", "--tools", str(args.tools), "--n", str(args.n)]
        command += ["--out", str(data), "--seed", str(args.seed), "--quiet"]
        started = time.monotonic()
        print("+ " + " ".join(command[2:]), flush=True)
        subprocess.run(command, check=True)
        seconds = round(time.monotonic() - started, 1)
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    result = check(tools, rows, args.sample, args.seed)
    result["tools_file"] = str(args.tools.relative_to(ROOT)) if args.tools.is_relative_to(ROOT) else str(args.tools)
    result["generation_seconds"] = seconds
    result["examples_per_minute"] = round(60 * len(rows) / seconds, 2) if seconds else None
    report = data.with_name(data.stem + ".report.json")
    if report.is_file():
        gen = json.loads(report.read_text())
        result["generator"] = {k: gen.get(k) for k in ("accepted", "attempts", "rejected", "teacher_calls", "seconds")}
    if args.outside_check is not None and seconds is not None:
        printed = subprocess.run(
            [sys.executable, str(args.outside_check), str(args.tools), str(data), str(seconds)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        result["outside_check"] = {"script": args.outside_check.name, "last_line": printed.splitlines()[-1]}
    result["commit"] = commit()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"realism_{args.tools.stem}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("implausible", "copied_samples", "leak_samples")}))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
