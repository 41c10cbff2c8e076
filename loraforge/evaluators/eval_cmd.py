"""`loraforge eval`: the base model, and an adapter if given, on a user's own held-out file."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Any

from loraforge.chat.format import ChatFormat, adapter_template
from loraforge.constants import Artifact
from loraforge.errors import ConfigError
from loraforge.evaluators.error_analysis import analyse
from loraforge.evaluators.evaluate import evaluate_labels, evaluate_tool_calls
from loraforge.files import atomic_write_json, claim_output_folder, read_json_object, read_jsonl, write_jsonl
from loraforge.gguf_info import adapter_mismatch, read_gguf_info
from loraforge.models import resolve_model
from loraforge.runtime import ServerConfig, make_server
from loraforge.runtime.config import Engine, context_for
from loraforge.tools import load_tools
from loraforge.ui import UI


def _adapter_files(adapter: Path | None) -> tuple[Path | None, dict[str, Any], Path | None]:
    """(gguf file, metadata, folder) of the adapter argument."""
    if adapter is None:
        return None, {}, None
    adapter = Path(adapter)
    folder = adapter if adapter.is_dir() else adapter.parent
    gguf = adapter / Artifact.ADAPTER_GGUF.value if adapter.is_dir() else adapter
    if not gguf.is_file():
        raise ConfigError(f"No GGUF adapter at {gguf}.", fix=f"Run `loraforge export {folder}` first.")
    return gguf, read_json_object(folder / Artifact.ADAPTER_META.value), folder


def _rows(data: Path, tools_file: Path | None) -> tuple[list[dict[str, Any]], str]:
    tools = [t.to_openai() for t in load_tools(tools_file)] if tools_file else None
    return load_eval_rows(data, tools)


ROLES = {"system", "user", "assistant", "tool"}
# What eval writes into its --out folder, per model ("" for the adapter, or the base when alone; "_base").
EVAL_OUTPUTS = (Artifact.PREDICTIONS, Artifact.ERROR_ANALYSIS, Artifact.METRICS)


def eval_output(artifact: Artifact, suffix: str = "") -> str:
    """The file name of one of eval's outputs for one model: predictions_base.jsonl for ("_base")."""
    stem, dot, ext = artifact.value.rpartition(".")
    return f"{stem}{suffix}{dot}{ext}"


def _arguments(value: Any) -> dict[str, Any] | None:
    """A call's arguments as an object (they may come as a JSON string), or None when they are not one."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def tool_row_problem(row: dict[str, Any]) -> str | None:
    """What is wrong with a tool-calling eval row, or None (checked before any server starts)."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "tool-calling rows need 'messages' up to the user turn."
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in ROLES:
            return f"messages[{index}] needs a 'role' (one of {', '.join(sorted(ROLES))})."
        # a whole conversation is scored at its assistant turns, so their calls must be readable
        calls = message.get("tool_calls") if role == "assistant" else None
        if calls is not None and not isinstance(calls, list):
            return f"messages[{index}].tool_calls must be a list of calls."
        for number, call in enumerate(calls or []):
            where = f"messages[{index}].tool_calls[{number}]"
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                return f'{where} needs the OpenAI form {{"function": {{"name", "arguments"}}}}.'
            if _arguments(function.get("arguments", {})) is None:
                return f"{where}.arguments must be an object or a JSON object string."
    if not any(m["role"] == "user" for m in messages):
        return "the messages hold no user turn to answer."
    if "meta" in row and not isinstance(row["meta"], dict):
        return "'meta' must be an object."
    tools = row.get("tools")
    if tools is not None and not isinstance(tools, list):
        return "'tools' must be a list of tools in OpenAI form."
    for index, tool in enumerate(tools or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return f'tools[{index}] needs the OpenAI form {{"type": "function", "function": {{"name": ...}}}}.'
    expected = row.get("tool_calls")
    if expected is None:
        return None
    if not isinstance(expected, list):
        return "'tool_calls' must be a list of calls."
    for index, call in enumerate(expected):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
            return f"tool_calls[{index}] needs a 'name'."
        if _arguments(call.get("arguments", {})) is None:
            return f"tool_calls[{index}].arguments must be an object (or a string holding a JSON object)."
        acceptable = call.get("acceptable", {})
        if not isinstance(acceptable, dict) or not all(isinstance(v, list) for v in acceptable.values()):
            return f"tool_calls[{index}].acceptable must map parameter names to lists of accepted values."
    return None


def load_eval_rows(data: Path, tools: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], str]:
    """Rows in the `eval` format and their kind ("tools" or "labels"); tool-calling rows without their own
    `tools` get `tools` (OpenAI form). Errors name the file and line."""
    rows = read_jsonl(data)
    if not rows:
        raise ConfigError(f"{data} holds no rows.")
    kind = "labels" if "item" in rows[0] else "tools"
    for number, row in enumerate(rows, start=1):
        row.setdefault("id", number)
        if kind == "labels" and "item" not in row:
            raise ConfigError(f"{data}, line {number}: labeled rows need 'item' (and optionally 'label').")
        if kind == "tools":
            problem = tool_row_problem(row)
            if problem:
                raise ConfigError(
                    f"{data}, line {number}: {problem}",
                    fix='A row looks like {"messages": [{"role": "user", "content": "..."}], "tool_calls": '
                    '[{"name": "get_weather", "arguments": {"city": "Oslo"}}]} ("tool_calls": [] for no call).',
                )
            if not row.get("tools"):
                if tools is None:
                    raise ConfigError(f"{data}, line {number}: no 'tools' in the row.", fix="Pass --tools FILE.")
                row["tools"] = tools
    return rows, kind


def run_eval(
    data: Path,
    *,
    adapter: Path | None,
    tools_file: Path | None,
    labels_file: Path | None,
    model: Path | None,
    out: Path,
    max_tokens: int,
    ui: UI,
    chat_template: str | None = None,
    engine: Engine = "xllamacpp",
) -> dict[str, Any]:
    """Score the base model, and the adapter if given, on `data`; `chat_template` (a checked
    --chat-template) replaces the adapter's own template, or the built-in one for the base alone. `engine`
    is the llama.cpp binding that serves them."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; eval writes a folder of predictions and metrics.")
    gguf, meta, folder = _adapter_files(adapter)
    recorded = meta.get("base_model")
    recorded_file = recorded if recorded and Path(recorded).is_file() else None
    if model is None and recorded and recorded_file is None:
        ui.warn(
            f"The adapter was trained on {recorded}, which is not there; scoring on the default model instead. "
            "Pass --model PATH to score on the adapter's own base model."
        )
    base = resolve_model(model or recorded_file)
    mismatch = adapter_mismatch(gguf, base) if gguf else None
    if mismatch:
        raise ConfigError(
            f"The adapter {gguf} does not fit the base model {base}: {mismatch}.",
            fix="Pass --model with the base model the adapter was trained on (its loraforge.json names it).",
        )
    rows, kind = _rows(data, tools_file)
    info = read_gguf_info(base)
    fmt = ChatFormat.of(adapter_template(folder, info.chat_template, chat_template, info.architecture))
    labels = None
    if kind == "labels":
        labels = meta.get("labels") or (sorted({r["label"] for r in read_jsonl(labels_file)}) if labels_file else None)
        if not labels:
            raise ConfigError(
                "The label set is unknown.",
                fix="Pass --labels FILE (a labeled JSONL), or an adapter trained by loraforge on labeled data.",
            )
    writes = [eval_output(artifact, suffix) for artifact in EVAL_OUTPUTS for suffix in ("", "_base")]
    claim_output_folder(out, "--out", writes)  # after every input check: a bad input leaves no folder behind
    models = [("base", None)] + ([("adapter", 0)] if gguf else [])
    config = ServerConfig(
        model_path=base,
        chat_template=fmt.template,
        lora_adapters=[gguf] if gguf else [],
        engine=engine,
        n_parallel=1,
        n_ctx=context_for(rows, max_tokens),
    )
    metrics: dict[str, Any] = {"data": str(data), "base_model": str(base), "adapter": str(gguf) if gguf else None}

    async def work() -> None:
        async with make_server(config) as server:
            async with server.client(concurrency=1, adapter_count=1 if gguf else 0) as client:
                for label, index in models:
                    bar = ui.progress(len(rows), f"evaluate {label}", "ex")
                    progress = functools.partial(bar.update, 1)
                    try:
                        if kind == "tools":
                            evaluation = await evaluate_tool_calls(
                                client, rows, adapter=index, max_tokens=max_tokens, on_done=progress
                            )
                        else:
                            invocation = meta.get("invocation_prompt") if index is not None else None
                            evaluation = await evaluate_labels(
                                client,
                                rows,
                                fmt=fmt,
                                labels=labels or [],
                                adapter=index,
                                invocation=invocation,
                                on_done=progress,
                            )
                    finally:
                        bar.close()
                    suffix = "" if (label == "adapter" or not gguf) else "_base"
                    write_jsonl(out / eval_output(Artifact.PREDICTIONS, suffix), evaluation.records)
                    metrics[label] = evaluation.summary
                    if evaluation.summary.get("n"):
                        analysis = analyse(evaluation.failures, total=evaluation.summary["n"])
                        atomic_write_json(out / eval_output(Artifact.ERROR_ANALYSIS, suffix), analysis)

    asyncio.run(work())
    if any(metrics[label].get("n") for label, _ in models):
        atomic_write_json(out / Artifact.METRICS.value, metrics)
    return metrics
