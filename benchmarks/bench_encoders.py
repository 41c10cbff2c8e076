"""Encoder adapters against their base, through the commands users run (issue 18).

1. NLI: `loraforge run --labels examples/nli-corrections.jsonl --model-kind encoder` (MiniLM; held-out rows
   split by premise). The base is the frozen encoder with a classification head trained on the same rows.
2. NLI, cross-checked: K folds by premise (every row held out once), the adapter with the run's first
   settings against the head-only base at two learning rates (the better one per fold is kept, so the
   base gets its best honest configuration).
3. Embeddings: `loraforge train --task embedding examples/code-search.jsonl`: recall@k of held-out queries
   over all 120 functions, adapter against the base MiniLM.

Raw results: benchmarks/results/encoders.json.

    python benchmarks/bench_encoders.py [--folds 5] [--iterations 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from provenance import ROOT, provenance

sys.path.insert(0, str(ROOT))

NLI = ROOT / "examples" / "nli-corrections.jsonl"
CODE = ROOT / "examples" / "code-search.jsonl"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}


def loraforge(*argv: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "loraforge", *argv, "--quiet"], check=True, env=ENV, cwd=ROOT)
    return time.monotonic() - started


def folds(k: int) -> dict:
    from loraforge.encoders.config import EncoderConfig
    from loraforge.encoders.data import LabeledText, load_labeled_texts
    from loraforge.encoders.evaluate import classifier_scores
    from loraforge.encoders.model import resolve_encoder
    from loraforge.encoders.train import train_classifier

    rows = load_labeled_texts(NLI)
    premises = sorted({row.text for row in rows})
    labels = sorted({row.label for row in rows})
    model_dir = resolve_encoder(None)
    config = EncoderConfig()
    results = []
    for fold in range(k):
        held_premises = set(premises[fold::k])
        train = [r for r in rows if r.text not in held_premises]
        heldout: list[LabeledText] = [r for r in rows if r.text in held_premises]
        adapter = train_classifier(train, model_dir, config, labels=labels)
        mine = classifier_scores(adapter.model, adapter.tokenizer, heldout, config.max_length)
        bases = []
        for rate in (config.learning_rate, 1e-2):
            probe = train_classifier(train, model_dir, replace(config, learning_rate=rate), labels=labels, lora=False)
            bases.append({**classifier_scores(probe.model, probe.tokenizer, heldout, config.max_length), "lr": rate})
        base = max(bases, key=lambda s: (s["accuracy"], s["macro_f1"]))
        row = {"fold": fold, "heldout": len(heldout), "adapter": mine, "base": base}
        for side in ("adapter", "base"):
            row[side] = {k: v for k, v in row[side].items() if k != "predicted"}
        print(json.dumps(row), flush=True)
        results.append(row)

    def mean(side: str, metric: str) -> float:
        return round(sum(r[side][metric] for r in results) / len(results), 4)

    return {
        "folds": results,
        "mean": {side: {m: mean(side, m) for m in ("accuracy", "macro_f1")} for side in ("adapter", "base")},
        "adapter_wins": sum(r["adapter"]["accuracy"] > r["base"]["accuracy"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=5, help="0 skips the cross-check")
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    out: dict = {"provenance": provenance("bench_encoders.py")}
    with tempfile.TemporaryDirectory(prefix="bench-encoders-") as scratch:
        run_dir = Path(scratch) / "nli"
        seconds = loraforge(
            "run", "--labels", str(NLI), "--model-kind", "encoder", "--iterations", str(args.iterations),
            "--out", str(run_dir),
        )  # fmt: skip
        final = json.loads((run_dir / "final.json").read_text())
        out["nli_run"] = {"seconds": round(seconds), **final}
        print(json.dumps(out["nli_run"]), flush=True)
        adapter = Path(scratch) / "code"
        seconds = loraforge("train", str(CODE), "--task", "embedding", "--outfile", str(adapter))
        out["embedding"] = {"seconds": round(seconds), **json.loads((adapter / "metrics.json").read_text())}
        print(json.dumps(out["embedding"]), flush=True)
    if args.folds:
        out["nli_folds"] = folds(args.folds)
    path = ROOT / "benchmarks" / "results" / "encoders.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
