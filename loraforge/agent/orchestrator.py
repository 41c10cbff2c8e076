"""The run loop: generate -> split -> train -> export -> evaluate -> decide, per iteration.

Every phase writes its outputs atomically and is recorded in state.json, so an interrupted run resumes
at the first unfinished phase. Phases never share the CPU: the teacher server is stopped before
training starts, and the evaluation server starts after it ends.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from loraforge.agent.config import RunConfig
from loraforge.agent.registry import promote, record_history
from loraforge.agent.state import RunState
from loraforge.constants import Artifact
from loraforge.errors import ConfigError
from loraforge.evaluators.toolcall_eval import summarise
from loraforge.files import atomic_write_json, read_jsonl, write_jsonl
from loraforge.generators.toolcalls import ToolCallGenerator
from loraforge.gguf_info import read_gguf_info
from loraforge.models import resolve_model
from loraforge.runtime import LlamaClient, ServerConfig, make_server
from loraforge.runtime.teacher import teacher
from loraforge.tools import load_tools
from loraforge.trainers.chat_format import ChatFormat, template_for_model
from loraforge.ui import UI

PRIMARY_METRIC = "exact_match"


class Orchestrator:
    """Runs the loop for one run folder. Create it, then `await run()`."""

    def __init__(self, config: RunConfig, ui: UI | None = None) -> None:
        self.config = config
        self.ui = ui or UI()
        self.run_dir = config.out
        self.tools = load_tools(config.tools)
        self.model = resolve_model(config.model)
        self.teacher = resolve_model(config.teacher_model) if config.teacher_model else self.model
        self.base_info = read_gguf_info(self.model)
        self.chat_format = ChatFormat(template_for_model(self.base_info.chat_template))
        self.state = RunState()

    # ---- the loop -------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._check_same_run()
        self.state = RunState.load(self.run_dir)
        for iteration in range(1, self.config.iterations + 1):
            it_dir = self.run_dir / f"iteration_{iteration}"
            it_dir.mkdir(exist_ok=True)
            steps = [
                ("generate", self._generate),
                ("split", self._split),
                ("train", self._train),
                ("export", self._export),
                ("evaluate", self._evaluate),
                ("decide", self._decide),
            ]
            for phase, action in steps:
                if self.state.is_done(iteration, phase):
                    continue
                started = time.monotonic()
                result = action(iteration, it_dir)
                if hasattr(result, "__await__"):
                    await result
                self.ui.info(f"[iteration {iteration}] {phase} done in {time.monotonic() - started:.0f} s")
                self.state.mark(self.run_dir, iteration, phase)
        self.state.finished = True
        self.state.save(self.run_dir)
        return self._final_metrics()

    def _check_same_run(self) -> None:
        """A run folder belongs to one task: refuse to resume it with a different tools file or model."""
        path = self.run_dir / Artifact.RUN_CONFIG.value
        identity = {"tools": [t.to_openai() for t in self.tools], "model": str(self.model)}
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("identity") != identity:
                raise ConfigError(
                    f"The run folder {self.run_dir} holds a run with other tools or another model.",
                    fix="Choose a new --out folder, or delete the old run.",
                )
        atomic_write_json(path, {"identity": identity, "config": self.config.to_dict()})

    # ---- phases ---------------------------------------------------------------------------------

    def _eval_server_config(self, adapters: list[Path]) -> ServerConfig:
        cfg = self.config
        parallel = cfg.eval_parallel
        return ServerConfig(
            model_path=self.model,
            llama_server=cfg.llama_server,
            chat_template=self.chat_format.template,
            lora_adapters=list(adapters),
            n_parallel=parallel,
            n_ctx=2048 * parallel,
        )

    async def _generate(self, iteration: int, it_dir: Path) -> None:
        from loraforge.generators.runner import generate_to_file

        data_path = it_dir / Artifact.DATA.value
        cfg = self.config
        async with teacher(
            model=self.teacher, server_urls=cfg.server_urls, llama_server=cfg.llama_server, parallel=cfg.parallel
        ) as client:
            generator = ToolCallGenerator(self.tools, client, cfg.generation, seed=cfg.seed)
            bar = self.ui.progress(cfg.examples, "generate", "ex")
            try:
                report = await generate_to_file(
                    generator,
                    data_path,
                    cfg.examples,
                    first_index=(iteration - 1) * 100_000,  # each iteration draws fresh seeds
                    on_row=lambda _row: bar.update(1),
                    report_to=it_dir / Artifact.DATA_REPORT.value,
                )
            finally:
                bar.close()
        self.ui.info(
            f"[iteration {iteration}] {report['kept_in_file']} verified examples; rejected: "
            + (", ".join(f"{k} {v}" for k, v in report["rejected"].items()) or "none")
        )

    def _split(self, iteration: int, it_dir: Path) -> None:
        rows = read_jsonl(it_dir / Artifact.DATA.value, tolerant=True)
        heldout_path = self.run_dir / Artifact.HELDOUT.value
        if iteration == 1:
            rows.sort(key=lambda r: r["meta"]["index"])
            random.Random(self.config.seed).shuffle(rows)
            n_held = max(1, round(len(rows) * self.config.heldout_fraction))
            write_jsonl(heldout_path, rows[:n_held])
            train = rows[n_held:]
        else:
            previous = read_jsonl(self.run_dir / f"iteration_{iteration - 1}" / Artifact.TRAIN.value)
            train = previous + rows
        if len(train) < 4:
            raise ConfigError(
                f"Only {len(train)} training examples were verified; that is too few to train.",
                fix="Raise --examples, or add worked examples to the tools file so the teacher has models.",
            )
        write_jsonl(it_dir / Artifact.TRAIN.value, train)
        shutil.copyfile(heldout_path, it_dir / Artifact.HELDOUT.value)

    def _train(self, iteration: int, it_dir: Path) -> None:
        from loraforge.trainers.job import run_training

        bar = self.ui.progress(None, "train", "step")

        def tick(step: int, total: int, record: dict[str, float]) -> None:
            bar.total = total
            bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
            bar.update(step - bar.n)

        meta = {
            "task": "tools",
            "architecture": self.base_info.architecture,
            "tools": [t.to_openai() for t in self.tools],
        }
        try:
            run_training(
                read_jsonl(it_dir / Artifact.TRAIN.value),
                self.model,
                self.config.training,
                it_dir,
                progress=self.ui.info,
                on_step=tick,
                extra_meta=meta,
            )
        finally:
            bar.close()

    def _export(self, iteration: int, it_dir: Path) -> None:
        from loraforge.trainers.export_gguf import export_adapter

        export_adapter(it_dir, self.base_info, it_dir / Artifact.ADAPTER_GGUF.value)

    async def _evaluate(self, iteration: int, it_dir: Path) -> None:
        from loraforge.evaluators.error_analysis import analyse
        from loraforge.evaluators.toolcall_eval import evaluate_rows, failures

        heldout = read_jsonl(it_dir / Artifact.HELDOUT.value)
        server_cfg = self._eval_server_config([it_dir / Artifact.ADAPTER_GGUF.value])
        results: dict[str, Any] = {}
        per_model: dict[str, Any] = {}
        records: list[dict[str, Any]] = []
        async with make_server(server_cfg) as server:
            # Continuous batching changes greedy outputs from run to run; evaluation uses one slot, and runs
            # the base and the adapter as separate passes so the shared tools prompt stays cached.
            concurrency = self.config.eval_parallel
            async with LlamaClient(server.base_url, concurrency=concurrency, adapter_count=1) as client:
                for label, adapter in (("base", None), ("adapter", 0)):
                    bar = self.ui.progress(len(heldout), f"evaluate {label}", "ex")
                    try:
                        rows_out = await evaluate_rows(
                            client,
                            heldout,
                            adapter=adapter,
                            max_tokens=self.config.eval_max_tokens,
                            on_done=functools.partial(bar.update, 1),
                        )
                    finally:
                        bar.close()
                    per_model[label] = rows_out
                    results[label] = summarise(rows_out, heldout)
                    records += [{**r.record(i), "model": label} for i, r in enumerate(rows_out)]
                if self.config.judge:
                    results["judge"] = await self._judge(client, heldout, per_model)
        write_jsonl(it_dir / Artifact.PREDICTIONS.value, records)
        analysis = analyse(failures(per_model["adapter"], heldout), total=len(heldout))
        analysis["base"] = analyse(failures(per_model["base"], heldout), total=len(heldout))["by_error"]
        atomic_write_json(it_dir / "error_analysis.json", analysis)
        train_result = json.loads((it_dir / "train_result.json").read_text())
        report_path = it_dir / Artifact.DATA_REPORT.value
        metrics = {
            **results,
            "iteration": iteration,
            "primary_metric": PRIMARY_METRIC,
            "heldout_examples": len(heldout),
            "train_examples": len(read_jsonl(it_dir / Artifact.TRAIN.value)),
            "training": {k: train_result[k] for k in ("steps", "best_val_loss", "final_train_loss", "seconds")},
            "data": json.loads(report_path.read_text()) if report_path.is_file() else None,
            "measured_with": "llama.cpp server, greedy decoding, base and adapter in the same server run",
        }
        atomic_write_json(it_dir / Artifact.METRICS.value, metrics)

    async def _judge(self, client: LlamaClient, heldout: list[dict], per_model: dict[str, Any]) -> dict[str, Any]:
        """Final answers after tool results, scored 1-10 and compared pairwise by the judge (the base model)."""
        from loraforge.evaluators import judge

        scores: dict[str, list[int | None]] = {"base": [], "adapter": []}
        verdicts: list[str] = []
        cases = [i for i, row in enumerate(heldout) if row["messages"][-1]["role"] == "assistant"]
        bar = self.ui.progress(len(cases), "judge", "ex")
        try:
            for index in cases:
                row = heldout[index]
                request = next(m["content"] for m in row["messages"] if m["role"] == "user")
                results = [m["content"] for m in row["messages"] if m["role"] == "tool"]
                answers = {label: per_model[label][index].final_text for label in scores}
                for label, answer in answers.items():
                    scores[label].append((await judge.score_answer(client, request, results, answer))["score"])
                verdicts.append(await judge.compare(client, request, results, answers["base"], answers["adapter"]))
                bar.update(1)
        finally:
            bar.close()
        summary = judge.summarise_judgements(scores, verdicts)
        correct = {label: [per_model[label][i].correct for i in cases] for label in scores}
        summary["agreement_with_exact_match"] = {
            label: judge.agreement(scores[label], correct[label]) for label in scores
        }
        return summary

    def _decide(self, iteration: int, it_dir: Path) -> None:
        metrics = json.loads((it_dir / Artifact.METRICS.value).read_text())
        score = metrics["adapter"][PRIMARY_METRIC]
        base = metrics["base"][PRIMARY_METRIC]
        best_score = None
        if self.state.best_iteration is not None:
            best_path = self.run_dir / f"iteration_{self.state.best_iteration}" / Artifact.METRICS.value
            best_score = json.loads(best_path.read_text())["adapter"][PRIMARY_METRIC]
        promoted = score > base and (best_score is None or score > best_score)
        if promoted:
            promote(self.run_dir, it_dir)
            self.state.best_iteration = iteration
        reason = (
            f"adapter {PRIMARY_METRIC} {score:.3f} vs base {base:.3f}"
            + (f" and best so far {best_score:.3f}" if best_score is not None else "")
            + ("; promoted to final_adapter" if promoted else "; not promoted")
        )
        entry = {
            "iteration": iteration,
            "adapter": score,
            "base": base,
            "promoted": promoted,
            "reason": reason,
            "time": time.time(),
        }
        self.state.history.append(entry)
        record_history(self.run_dir, entry)
        self.ui.info(f"[iteration {iteration}] {reason}")

    def _final_metrics(self) -> dict[str, Any]:
        if self.state.best_iteration is None:
            return {}
        return json.loads((self.run_dir / Artifact.FINAL_ADAPTER.value / Artifact.METRICS.value).read_text())
