"""Export, prove, bundle: the one path from a PEFT adapter to a served GGUF adapter, used by
`loraforge export` and by the loop's export phase.

The GGUF adapter is written, then checked against PEFT through llama.cpp (`fidelity.check_fidelity`), and
the serving bundle (serve.sh, Modelfile, model card) is written only for an adapter that passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loraforge.constants import Artifact
from loraforge.files import atomic_write_json

REPORT = Artifact.EXPORT_REPORT.value


@dataclass
class ExportOutcome:
    """What an export wrote and proved."""

    gguf: Path
    summary: Any  # export_gguf.ExportSummary: tensors, rank, alpha
    report: dict[str, Any] | None  # the fidelity report; None when the check was skipped
    bundle: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.report is None or bool(self.report["passed"])


def fidelity_prompts(folder: Path, base: Path, count: int) -> tuple[list[list[int]], int]:
    """Token ids of up to `count` held-out prompts, in the adapter's own chat template, and the EOS id."""
    from transformers import AutoTokenizer

    from loraforge.chat.format import ChatFormat, adapter_template
    from loraforge.evaluators.prompts_for import heldout_prompts
    from loraforge.gguf_info import read_gguf_info
    from loraforge.models.loading import hf_folder_for
    from loraforge.trainers.formatting import prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(str(hf_folder_for(base)))
    info = read_gguf_info(base) if base.is_file() else None
    model_template = info.chat_template if info else tokenizer.chat_template
    fmt = ChatFormat.of(adapter_template(folder, model_template, architecture=info.architecture if info else None))
    return [prompt_ids(fmt, tokenizer, m, t) for m, t in heldout_prompts(folder, count)], tokenizer.eos_token_id


def export_proven(
    folder: Path, base: Path, *, outtype: str = "f32", prompts: int = 20, check: bool = True
) -> ExportOutcome:
    """Write `folder/adapter.gguf`; unless `check` is off, prove it on `prompts` held-out prompts (report in
    `folder/export_report.json`); write the serving bundle when it passed."""
    from loraforge.evaluators.fidelity import check_fidelity
    from loraforge.gguf_info import read_gguf_info
    from loraforge.trainers.bundle import write_bundle
    from loraforge.trainers.export_gguf import check_adapter_matches_base, export_adapter

    folder = Path(folder)
    info = read_gguf_info(base)
    warnings = check_adapter_matches_base(folder, info, base)
    out = folder / Artifact.ADAPTER_GGUF.value
    summary = export_adapter(folder, info, out, outtype)
    report = None
    if check:
        try:
            ids, eos = fidelity_prompts(folder, base, prompts)
            report = check_fidelity(folder, base, out, ids, eos)
        except BaseException:
            out.unlink(missing_ok=True)  # unproven, and a later export would take it for a file of the user's
            raise
        report["outtype"] = outtype
        atomic_write_json(folder / REPORT, report)
    else:
        (folder / REPORT).unlink(missing_ok=True)  # a report of an earlier export would describe other weights
    outcome = ExportOutcome(out, summary, report, warnings=warnings)
    if outcome.passed:
        outcome.bundle = write_bundle(folder, base, report)
    return outcome
