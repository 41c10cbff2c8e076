"""The serving bundle written beside a GGUF adapter: how to run it with llama-server and Ollama, and a
short model card whose numbers come from the run's own files."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from loraforge.chat.families import CHATML, declared_end_of_turn, family_of
from loraforge.constants import ALL_METRICS, Artifact
from loraforge.files import atomic_write_text, read_json_object


def llama_server_command(base: Path, folder: Path, *, relative: bool = False) -> str:
    """The llama-server command for this adapter, every path shell-quoted. With `relative`, the adapter's
    files are named from the bundle's own folder (as serve.sh, which changes there first, uses them)."""
    where = Path(".") if relative else folder
    parts = ["llama-server", "-m", str(base), "--lora", str(where / Artifact.ADAPTER_GGUF.value), "--jinja"]
    if (folder / Artifact.CHAT_TEMPLATE.value).is_file():
        parts += ["--chat-template-file", str(where / Artifact.CHAT_TEMPLATE.value)]
    parts += ["--host", "127.0.0.1", "--port", "8080"]
    return " ".join(shlex.quote(part) for part in parts)


def modelfile(base: Path, template: str | None = None) -> str:
    """An Ollama Modelfile for the adapter; the prompt template is written out for ChatML markup only (other
    families keep the base GGUF's own), with the stop text of the adapter's template family."""
    family = family_of(template) or CHATML
    lines = [
        "# Ollama Modelfile. Build with: ollama create my-adapter -f Modelfile",
        "# Note: newer Ollama versions no longer create models from an ADAPTER line (GGUF LoRA adapters);",
        "# models built with an older version keep serving. With a newer Ollama, serve through llama-server.",
        f"FROM {base}",
        "ADAPTER ./adapter.gguf",
    ]
    if family.end_of_turn == CHATML.end_of_turn:
        lines.append(
            'TEMPLATE """{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
            '{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"""'
        )
    stop = (declared_end_of_turn(template) if template else None) or family.end_of_turn
    lines += [
        f"PARAMETER stop {stop}",
        "# Tool calling needs the Jinja template in chat_template.jinja, which Ollama's Go templates cannot run:",
        "# use llama-server for tools.",
    ]
    return "\n".join(lines) + "\n"


def model_card(folder: Path, base: Path, fidelity: dict[str, Any] | None) -> str:
    meta, metrics = (
        read_json_object(folder / Artifact.ADAPTER_META.value),
        read_json_object(folder / Artifact.METRICS.value),
    )
    lines = [
        f"# LoRA adapter for {base.name}",
        "",
        f"- Base model: `{base}`",
        f"- Adapter type: {meta.get('adapter', 'lora')}, rank {meta.get('training', {}).get('r', '?')}, "
        f"alpha {meta.get('training', {}).get('alpha', '?')}",
    ]
    if meta.get("tools"):
        lines.append("- Tools: " + ", ".join(t["function"]["name"] for t in meta["tools"]))
    data = metrics.get("data") or {}
    if data:
        lines.append(f"- Training data: {metrics.get('train_examples')} examples, styles {data.get('per_style')}")
    if metrics.get("base") and metrics.get("adapter"):
        lines += ["", "| held-out metric | base | adapter |", "|---|---|---|"]
        for key in ALL_METRICS:
            if key in metrics["adapter"] and metrics["adapter"][key] is not None:
                lines.append(f"| {key} | {metrics['base'][key]:.3f} | {metrics['adapter'][key]:.3f} |")
        lines.append(f"\nMeasured through llama.cpp on {metrics.get('heldout_examples')} held-out examples.")
    if fidelity:
        lines.append(
            f"\nExport fidelity (llama.cpp against PEFT): top-1 agreement {fidelity['top1_agreement']:.4f} "
            f"over {fidelity['positions']} positions ({fidelity['top1_agreement_near_ties']:.4f} counting "
            f"{len(fidelity['near_ties'])} quantisation near ties), greedy match {fidelity['greedy_match']:.2f}."
        )
    lines += ["", "## Serve", "", "```", llama_server_command(base, folder), "```", ""]
    return "\n".join(lines)


# The first line of each bundle file: a file without it was not written by loraforge and is left alone.
MARKERS = {
    Artifact.SERVE_SCRIPT.value: "#!/bin/sh\n# Serve the base model with this adapter",
    Artifact.MODELFILE.value: "# Ollama Modelfile.",
    Artifact.MODEL_CARD.value: "# LoRA adapter for ",
}


def write_bundle(folder: Path, base: Path, fidelity: dict[str, Any] | None = None) -> list[Path]:
    """Write serve.sh, Modelfile and the model card beside the adapter; a file of that name that loraforge
    did not write (the user's own README.md, say) is kept, and left out of the returned list."""
    folder, base = Path(folder), Path(base).resolve()  # serve.sh runs from the bundle's folder
    serve = folder / Artifact.SERVE_SCRIPT.value
    written = {
        serve: "#!/bin/sh\n# Serve the base model with this adapter (OpenAI-compatible API).\n"
        + 'cd "$(dirname "$0")" || exit 1\nexec '
        + llama_server_command(base, folder, relative=True)
        + ' "$@"\n',
        folder / Artifact.MODELFILE.value: modelfile(base, _saved_template(folder)),
        folder / Artifact.MODEL_CARD.value: model_card(folder, base, fidelity),
    }
    kept = []
    for path, text in written.items():
        if path.exists() and not _ours(path):
            continue
        atomic_write_text(path, text)
        kept.append(path)
    if serve in kept:
        serve.chmod(0o755)
    return kept


def _ours(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(200).startswith(MARKERS[path.name])
    except (OSError, UnicodeDecodeError):
        return False


def _saved_template(folder: Path) -> str | None:
    path = folder / Artifact.CHAT_TEMPLATE.value
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
