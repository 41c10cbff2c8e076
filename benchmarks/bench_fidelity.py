"""How sharp the export proof is: the figures behind README's "Exporting with proof".

    .venv/bin/python benchmarks/bench_fidelity.py ADAPTER_DIR [--prompts 20] [--scale 5]

On the same held-out prompts of ADAPTER_DIR (a PEFT adapter folder that loraforge trained), the script runs
loraforge's fidelity check (`loraforge.evaluators.fidelity.check_fidelity`) on four exports:

- `zero`: the adapter with every lora_B set to 0, i.e. no adapter at all: how often the quantised base in
  llama.cpp agrees with itself dequantised in PyTorch (the noise that the near-tie rule and the
  log-probability limit allow for);
- `correct`: the export as loraforge writes it (q/k rows permuted for llama-family models);
- `unpermuted`: the same weights without the q/k permutation, a layout error the proof must catch;
- `correct_x{scale}` and `unpermuted_x{scale}`: both with every q/k lora_B multiplied by `--scale`, which is
  how the integration test makes a tiny run's adapter strong enough for the wrong layout to show.

Raw results: benchmarks/results/fidelity.json (every report, with the command and the adapter).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from pathlib import Path

from provenance import provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
KEEP = (
    "prompts",
    "positions",
    "top1_agreement",
    "top1_agreement_near_ties",
    "greedy_match",
    "logprob_error",
    "base_logprob_error",
    "logprob_error_limit",
    "passed",
)


def scaled_copy(adapter: Path, target: Path, scale: float, only_qk: bool) -> Path:
    """A copy of the adapter folder with lora_B multiplied by `scale` (only q/k, or every module)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, target)
    path = target / "adapter_model.safetensors"
    weights = load_file(str(path))
    for name in weights:
        if "lora_B" in name and (not only_qk or "q_proj" in name or "k_proj" in name):
            weights[name] = weights[name] * scale
    save_file(weights, str(path))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter", type=Path, help="a PEFT adapter folder written by loraforge")
    parser.add_argument("--prompts", type=int, default=20, help="held-out prompts (loraforge export's default)")
    parser.add_argument("--scale", type=float, default=5.0, help="q/k amplification of the scaled pair")
    parser.add_argument("--out", type=Path, default=RESULTS / "fidelity.json")
    args = parser.parse_args()

    from loraforge.evaluators.fidelity import check_fidelity
    from loraforge.export.proven import fidelity_prompts
    from loraforge.files import read_json
    from loraforge.gguf_info import read_gguf_info
    from loraforge.models import resolve_model
    from loraforge.trainers.export_gguf import export_adapter

    meta = read_json(args.adapter / "loraforge.json") if (args.adapter / "loraforge.json").is_file() else {}
    base = resolve_model(Path(meta["base_model"]) if meta.get("base_model") else None)
    info = read_gguf_info(base)
    prompts, eos = fidelity_prompts(args.adapter, base, args.prompts)
    cases = [
        ("zero", 0.0, False, True),
        ("correct", 1.0, True, True),
        ("unpermuted", 1.0, True, False),
        (f"correct_x{args.scale:g}", args.scale, True, True),
        (f"unpermuted_x{args.scale:g}", args.scale, True, False),
    ]
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, scale, only_qk, permute in cases:
            folder = args.adapter if scale == 1.0 else scaled_copy(args.adapter, Path(tmp) / name, scale, only_qk)
            gguf = Path(tmp) / f"{name}.gguf"
            export_adapter(folder, info, gguf, permute_qk=permute)
            report = check_fidelity(folder, base, gguf, prompts, eos)
            reports[name] = {k: report.get(k) for k in KEEP}
            print(name, json.dumps(reports[name]), flush=True)
    result = {
        **provenance("bench_fidelity.py"),
        "adapter": str(args.adapter),
        "base_model": str(base),
        "machine": {"python": platform.python_version()},
        "reports": reports,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print("| export | positions | top-1 | top-1 with near ties | log-prob error | limit | passed |")
    print("|---|---|---|---|---|---|---|")
    for name, r in reports.items():
        print(
            f"| {name} | {r['positions']} | {r['top1_agreement']:.3f} | {r['top1_agreement_near_ties']:.3f} "
            f"| {r['logprob_error']:.3f} | {r['logprob_error_limit']:.3f} | {r['passed']} |"
        )
    print(f"\nraw results: {args.out}")


if __name__ == "__main__":
    main()
