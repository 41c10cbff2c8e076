"""The run loop: generate -> split -> train -> export -> evaluate -> decide, iteration after iteration.

Every phase writes its outputs atomically and is recorded in state.json, so an interrupted run resumes at
the first unfinished phase and repeats no finished one. Phases never share the CPU: the teacher server
stops before training starts, and the evaluation server starts after it ends. The decide phase asks the
strategy for the next iteration's plan (written to iteration_N+1/plan.json) or for a stop.
"""

from __future__ import annotations

import asyncio
import copy
import errno
import functools
import inspect
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loraforge.agent import eta, strategy, triggers, warm_start
from loraforge.agent.budget import NextRows
from loraforge.agent.config import RunConfig
from loraforge.agent.registry import hold, promote, record_history
from loraforge.agent.state import RunState, claim_run_folder
from loraforge.agent.stopping import StopControl
from loraforge.agent.tasks import LabelTask, Task, ToolTask
from loraforge.chat.format import ChatFormat, load_template_file, template_for_model
from loraforge.constants import Artifact
from loraforge.errors import ConfigError, DiskFull, PhaseTimeout, StopRequested
from loraforge.files import (
    atomic_write_json,
    atomic_write_text,
    read_json,
    read_jsonl,
    write_jsonl,
)
from loraforge.gguf_info import read_gguf_info
from loraforge.models import resolve_model
from loraforge.runtime import LlamaClient, ServerConfig, make_server
from loraforge.runtime.config import context_for
from loraforge.runtime.teacher import teacher
from loraforge.ui import UI

if TYPE_CHECKING:
    from loraforge.evaluators.evaluate import Evaluation

PLAN = Artifact.PLAN.value


def task_for(config: RunConfig) -> Task:
    config.check_task()
    if config.tools is not None:
        return ToolTask.from_file(config.tools)
    assert config.labels is not None  # check_task refused a config with neither
    return LabelTask.from_file(config.labels)


class Orchestrator:
    """Runs the loop for one run folder. Create it, then `await run()`."""

    def __init__(self, config: RunConfig, ui: UI | None = None, task: Task | None = None) -> None:
        self.config = config
        self.ui = ui or UI()
        self.run_dir = config.out
        self.task = task or task_for(config)
        self.model = resolve_model(config.model)
        self.teacher = resolve_model(config.teacher_model) if config.teacher_model else self.model
        self.judge_model = resolve_model(config.judge_model) if config.judge_model else self.teacher
        self.base_info = read_gguf_info(self.model)
        self._template = self._given_template()
        self.chat_format = ChatFormat.of(
            template_for_model(self.base_info.chat_template, self._template, self.base_info.architecture)
        )
        self.state = RunState()
        self.stop = StopControl(self.ui)

    # ---- the loop -------------------------------------------------------------------------------

    def phases(self) -> list[tuple[str, Any]]:
        return [
            ("generate", self._generate),
            ("split", self._split),
            ("train", self._train),
            ("export", self._export),
            ("evaluate", self._evaluate),
            ("decide", self._decide),
        ]

    async def run(self) -> dict[str, Any]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._check_same_run()
        self._copy_real_requests()
        if self._template is not None and not (self.run_dir / Artifact.CHAT_TEMPLATE.value).is_file():
            atomic_write_text(self.run_dir / Artifact.CHAT_TEMPLATE.value, self._template)
        self.state = RunState.load(self.run_dir)
        if not self.state.done and (self.config.min_samples is not None or self.config.min_error_rate is not None):
            result = await self._check_triggers()
            atomic_write_json(self.run_dir / Artifact.TRIGGER.value, result.__dict__)
            if not result.ready:
                return {"skipped": result.message}
            self.ui.info(result.message)
        with self.stop.signal_handlers():
            while not self.state.finished:
                iteration = self.state.iteration
                it_dir = self.run_dir / f"iteration_{iteration}"
                it_dir.mkdir(exist_ok=True)
                for phase, action in self.phases():
                    if self.state.is_done(iteration, phase):
                        continue
                    if self.stop.is_set():
                        raise StopRequested(f"before {phase} of iteration {iteration}")
                    self.ui.info(self._status(iteration, phase))
                    started = time.monotonic()
                    await self._run_phase(iteration, phase, action, it_dir)
                    seconds = time.monotonic() - started
                    self.ui.info(f"[iteration {iteration}] {phase} done in {seconds:.0f} s")
                    self.state.add_time(iteration, seconds, phase, self._phase_size(iteration, phase))
                    self.state.mark(self.run_dir, iteration, phase)
                if self.state.stop_reason:
                    self.state.finished = True
                else:
                    self.state.iteration += 1
                self.state.save(self.run_dir)
                self._write_report()
        return self._final_metrics()

    def _phase_size(self, iteration: int, phase: str) -> float:
        """The work of a phase, for the time estimate (eta.py): examples to generate, rows x epochs to train
        (the previous iteration's rows until this one's split has run), one unit otherwise."""
        if phase == "generate":
            return float(self._plan(iteration).examples)
        if phase == "train":
            epochs = self._plan(iteration).epochs
            train = self.run_dir / f"iteration_{iteration}" / Artifact.TRAIN.value
            if train.is_file():  # counted, not parsed: this runs before every phase
                with open(train, encoding="utf-8") as rows:
                    return float(sum(1 for line in rows if line.strip()) * epochs)
            before = self.state.phase_sizes.get(str(iteration - 1), {}).get("train", 0.0)
            return before / self._plan(iteration - 1).epochs * epochs if before else 0.0
        return 1.0

    def _status(self, iteration: int, phase: str) -> str:
        """One line for the whole run: where it is, and how long this iteration and the run have left."""
        names = [name for name, _ in self.phases()]
        pending = [name for name in names[names.index(phase) :] if not self.state.is_done(iteration, name)]
        sizes = {name: self._phase_size(iteration, name) for name in names}
        rates = eta.rates(self.state.phase_seconds, self.state.phase_sizes)
        after = max(0, self.config.iterations - iteration)
        this, run = eta.run_remaining(rates, {name: sizes[name] for name in pending}, sizes, after)
        left = f"this iteration {eta.describe(this)} more"
        if after:
            left += f", the run {eta.describe(run)} more (at most {after} more iteration{'s' if after > 1 else ''})"
        return f"[iteration {iteration} of {self.config.iterations}] {phase}; {left}"

    def _write_report(self) -> None:
        """report.html after every iteration, so that a long run can be followed; never fatal."""
        from loraforge.report import build_report

        try:
            written = build_report(self.run_dir)
            self.ui.info(f"report: {written['html']}")
        except Exception as exc:  # noqa: BLE001 - the run matters more than its report
            self.ui.warn(f"The report could not be written ({exc}); `loraforge report {self.run_dir}` retries.")

    async def _run_phase(self, iteration: int, phase: str, action: Any, it_dir: Path) -> None:
        """One phase with a time limit; a full disk and a stop request end the run with its state intact."""
        is_async = inspect.iscoroutinefunction(action)
        if is_async:
            task = asyncio.ensure_future(action(iteration, it_dir))
        else:  # blocking work runs in a thread, so that signals and the timeout stay responsive
            task = asyncio.ensure_future(asyncio.to_thread(action, iteration, it_dir))
        limit = self.config.phase_timeout_minutes * 60
        try:
            with self.stop.running(task, is_async):
                await asyncio.wait_for(task, timeout=limit)
        except TimeoutError as exc:
            self.stop.set()  # a training thread stops at its next step
            raise PhaseTimeout(
                f"The {phase} phase of iteration {iteration} ran longer than {self.config.phase_timeout_minutes:g} "
                f"minutes and was stopped. Finished phases are saved in {self.run_dir}/state.json.",
                fix=f"Raise phase_timeout_minutes, then `loraforge run --resume {self.run_dir}`.",
            ) from exc
        except asyncio.CancelledError:
            if self.stop.is_set():
                raise StopRequested(f"during {phase} of iteration {iteration}") from None
            raise
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise DiskFull(
                f"The disk holding {self.run_dir} is full ({phase} phase of iteration {iteration}). "
                "The run stopped; finished phases are saved and no file was left half-written.",
                fix=f"Free some space, then `loraforge run --resume {self.run_dir}`.",
            ) from exc

    async def _scored(
        self, client: LlamaClient, rows: list[dict[str, Any]], title: str, adapter: int | None, max_tokens: int = 0
    ) -> Evaluation:
        """The task's evaluation of one model on `rows`, behind a progress bar."""
        bar = self.ui.progress(len(rows), title, "ex")
        try:
            return await self.task.evaluate(
                client,
                rows,
                adapter=adapter,
                max_tokens=max_tokens or self.config.eval_max_tokens,
                on_done=functools.partial(bar.update, 1),
                fmt=self.chat_format,
                invocation=self._invocation(adapter),
            )
        finally:
            bar.close()

    async def _check_triggers(self) -> triggers.TriggerResult:
        """--min-samples / --min-error-rate on labeled feedback; the base model is measured when the rows
        do not record what the model predicted."""
        assert self.config.labels is not None  # the config refuses triggers without labels
        raw = read_jsonl(self.config.labels)
        rate = triggers.recorded_error_rate(raw)
        enough = self.config.min_samples is None or len(raw) >= self.config.min_samples
        if rate is None and enough and self.config.min_error_rate is not None:
            rows = self.task.seed_rows()
            async with make_server(self._eval_server_config([])) as server:
                async with server.client(concurrency=1) as client:
                    evaluation = await self._scored(client, rows, "measure error rate", None, max_tokens=32)
            rate = 1 - sum(bool(ok) for ok in evaluation.correct) / len(rows)
        return triggers.check(len(raw), rate, self.config.min_samples, self.config.min_error_rate)

    def _invocation(self, adapter: int | None) -> str | None:
        """The aLoRA invocation that ends the adapter's prompts, as in its training (None for the base)."""
        training = self.config.training
        return training.invocation_prompt if adapter is not None and training.adapter == "alora" else None

    def _check_same_run(self) -> None:
        """A run folder belongs to one task and model: refuse to resume it with others."""
        identity = {"task": self.task.kind, "definition": self.task.identity(), "model": str(self.model)}
        claim_run_folder(self.run_dir, identity, self.task.kind, self.config.to_dict())

    def _given_template(self) -> str | None:
        """--chat-template: the run folder's copy when there is one (a resumed run keeps its template), else
        the user's file, checked."""
        saved = self.run_dir / Artifact.CHAT_TEMPLATE.value
        given = load_template_file(self.config.chat_template) if self.config.chat_template else None
        if not saved.is_file():
            return given
        text = saved.read_text(encoding="utf-8")
        if given is not None and given != text:
            raise ConfigError(
                f"The run folder {self.run_dir} was started with a chat template other than "
                f"{self.config.chat_template}.",
                fix="Resume without --chat-template (the run keeps its own), or start a new run with another --out.",
            )
        return text

    def _copy_real_requests(self) -> None:
        """--eval-data: the user's real requests, checked and copied into the run folder once, so that a
        resumed run scores on the same rows."""
        path = self.run_dir / Artifact.REAL_HELDOUT.value
        if self.config.eval_data is None or path.is_file():
            return
        from loraforge.evaluators.eval_cmd import load_eval_rows

        rows, kind = load_eval_rows(self.config.eval_data, self.task.openai_tools())
        if kind != self.task.kind:
            raise ConfigError(
                f"{self.config.eval_data} holds {kind} rows, but this run learns {self.task.kind}.",
                fix="Pass real requests of the same task: tool-calling rows for --tools, {item, label} for --labels.",
            )
        if kind == "tools" and not all("tool_calls" in row for row in rows):
            raise ConfigError(
                f"{self.config.eval_data}: every row needs its expected 'tool_calls' ([] when no tool fits).",
                fix='Add "tool_calls": [{"name": ..., "arguments": {...}}] to each row.',
            )
        if kind == "labels" and not all("label" in row for row in rows):
            raise ConfigError(f"{self.config.eval_data}: every row needs its 'label'.")
        write_jsonl(path, rows)

    def real_rows(self) -> list[dict[str, Any]]:
        path = self.run_dir / Artifact.REAL_HELDOUT.value
        return read_jsonl(path) if path.is_file() else []

    # ---- phases ---------------------------------------------------------------------------------

    def _plan(self, iteration: int) -> strategy.IterationPlan:
        path = self.run_dir / f"iteration_{iteration}" / PLAN
        if path.is_file():
            return strategy.IterationPlan.from_dict(read_json(path))
        cfg = self.config
        plan = strategy.first_plan(cfg.examples, cfg.generation, cfg.training)
        atomic_write_json(path, plan.to_dict())
        return plan

    def _known_texts(self, iteration: int) -> list[str]:
        """Held-out and earlier training texts: new data must not come near them (LLM2LLM's rule)."""
        if iteration == 1:
            return []
        rows = read_jsonl(self.run_dir / Artifact.HELDOUT.value) + self._earlier_rows(iteration)
        return [self.task.text_of(r) for r in rows]

    def _earlier_rows(self, iteration: int) -> list[dict[str, Any]]:
        """Every training row of the iterations before `iteration`: the first one's training set (with the
        task's worked examples) and each later one's new rows."""
        rows = read_jsonl(self.run_dir / "iteration_1" / Artifact.TRAIN.value)
        for earlier in range(2, iteration):
            rows += read_jsonl(self.run_dir / f"iteration_{earlier}" / Artifact.DATA.value, tolerant=True)
        return rows

    def _warm_start_from(self, iteration: int) -> Path | None:
        """The adapter this iteration's training starts from: the best so far, with warm_start on and when it
        has this iteration's shape; None trains from scratch."""
        best = self.state.best_iteration
        if not self.config.warm_start or best is None or iteration == 1:
            return None
        plan, folder = self._plan(iteration), self.run_dir / f"iteration_{best}"
        why = warm_start.mismatch(folder, plan.r, plan.alpha, self.config.training.adapter)
        if why:
            self.ui.info(f"[iteration {iteration}] no warm start from iteration_{best}: {why}; training from scratch")
            return None
        return folder

    async def _generate(self, iteration: int, it_dir: Path) -> None:
        from loraforge.generators.runner import generate_to_file
        from loraforge.generators.stats import coverage_message

        cfg = self.config
        plan = self._plan(iteration)
        async with teacher(
            model=self.teacher,
            server_urls=cfg.server_urls,
            llama_server=cfg.llama_server,
            parallel=cfg.parallel,
            on_info=self.ui.info,
            server_model=cfg.server_model,
            engine=cfg.engine,
        ) as client:
            generator = self.task.generator(client, plan.generation, cfg.seed)
            for text in self._known_texts(iteration):
                generator.dedup.add(text, force=True)
            bar = self.ui.progress(plan.examples, "generate", "ex")
            try:
                report = await generate_to_file(
                    generator,
                    it_dir / Artifact.DATA.value,
                    plan.examples,
                    first_index=(iteration - 1) * 100_000,  # each iteration draws fresh seeds
                    on_row=lambda _row: bar.update(1),
                    on_warning=self.ui.warn,
                    report_to=it_dir / Artifact.DATA_REPORT.value,
                )
            finally:
                bar.close()
        self.ui.info(
            f"[iteration {iteration}] {report['kept_in_file']} verified examples; rejected: "
            + (", ".join(f"{k} {v}" for k, v in report["rejected"].items()) or "none")
        )
        for gap in report.get("uncovered_tools") or []:
            self.ui.warn(f"[iteration {iteration}] " + coverage_message(gap))

    def _split(self, iteration: int, it_dir: Path) -> None:
        rows = read_jsonl(it_dir / Artifact.DATA.value, tolerant=True)
        heldout_path = self.run_dir / Artifact.HELDOUT.value
        if iteration == 1:
            rows.sort(key=lambda r: r["meta"]["index"])
            random.Random(self.config.seed).shuffle(rows)
            n_held = max(1, round(len(rows) * self.config.heldout_fraction))
            write_jsonl(heldout_path, rows[:n_held])
            train = self.task.seed_rows() + rows[n_held:]
        else:
            earlier = self._earlier_rows(iteration)
            start = self._warm_start_from(iteration)
            if start is None:
                train = earlier + rows
            else:
                seed = self.config.seed * 1000 + iteration
                replayed = warm_start.replay(earlier, self.task.seed_rows(), len(rows), self.config.replay_share, seed)
                train = replayed + rows
                record = {"from": start.name, "new": len(rows), "replayed": len(replayed), "earlier": len(earlier)}
                atomic_write_json(it_dir / Artifact.WARM_START.value, record)
                self.ui.info(
                    f"[iteration {iteration}] warm start from {start.name}: {len(rows)} new rows and "
                    f"{len(replayed)} of {len(earlier)} earlier ones"
                )
        if len(train) < 4:
            raise ConfigError(
                f"Only {len(train)} training examples were verified; that is too few to train.",
                fix="Raise --examples, or add worked examples to the task file so the teacher has models.",
            )
        write_jsonl(it_dir / Artifact.TRAIN.value, train)
        write_jsonl(it_dir / Artifact.HELDOUT.value, read_jsonl(heldout_path))

    def _training_config(self, iteration: int) -> Any:
        plan = self._plan(iteration)
        training = copy.deepcopy(self.config.training)
        training.epochs, training.learning_rate = plan.epochs, plan.learning_rate
        training.r, training.alpha, training.dropout = plan.r, plan.alpha, plan.dropout
        return training

    def _train(self, iteration: int, it_dir: Path) -> None:
        from loraforge.trainers.job import run_training
        from loraforge.trainers.launch import launch

        bar = self.ui.progress(None, "train", "step")

        def tick(step: int, total: int, record: dict[str, float]) -> None:
            bar.total = total
            bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
            bar.update(step - bar.n)

        meta = {"architecture": self.base_info.architecture, **self.task.adapter_meta()}
        rows = [self.task.to_chat(row) for row in read_jsonl(it_dir / Artifact.TRAIN.value)]
        config = self._training_config(iteration)
        template = self.chat_format.template  # what the loop serves is what it trains
        warm = it_dir / Artifact.WARM_START.value
        init = self.run_dir / read_json(warm)["from"] if warm.is_file() else None
        try:
            if config.processes > 1:  # data parallel, in processes of their own
                launch(
                    rows,
                    self.model,
                    config,
                    it_dir,
                    extra_meta=meta,
                    chat_template=template,
                    on_step=tick,
                    should_stop=self.stop.is_set,
                    init_adapter=init,
                )
            else:
                run_training(
                    rows,
                    self.model,
                    config,
                    it_dir,
                    progress=self.ui.info,
                    on_step=tick,
                    extra_meta=meta,
                    should_stop=self.stop.is_set,
                    chat_template=template,
                    init_adapter=init,
                )
        finally:
            bar.close()

    def _export(self, iteration: int, it_dir: Path) -> None:
        """Export, prove against PEFT and bundle, as `loraforge export` does; `_decide` reads the proof."""
        from loraforge.export.proven import export_proven

        count = self.config.fidelity_prompts
        outcome = export_proven(it_dir, self.model, prompts=count, check=count > 0)
        for warning in outcome.warnings:
            self.ui.info(f"[iteration {iteration}] warning: {warning}")
        if outcome.report is not None:
            report = outcome.report
            self.ui.info(
                f"[iteration {iteration}] export proof {'passed' if outcome.passed else 'FAILED'}: top-1 agreement "
                f"{report['top1_agreement_near_ties']:.3f} over {report['positions']} positions, log-probability "
                f"error {report['logprob_error']:.3f} (limit {report['logprob_error_limit']:.3f})"
            )

    def _eval_server_config(self, adapters: list[Path], rows: list[dict[str, Any]] | None = None) -> ServerConfig:
        parallel = self.config.eval_parallel
        return ServerConfig(
            model_path=self.model,
            llama_server=self.config.llama_server,
            engine=self.config.engine,
            chat_template=self.chat_format.template,
            lora_adapters=list(adapters),
            n_parallel=parallel,
            n_ctx=context_for(rows or [], self.config.eval_max_tokens) * parallel,
        )

    async def _evaluate(self, iteration: int, it_dir: Path) -> None:
        """Base, this iteration's adapter and the best adapter so far, in one server run on the same rows."""
        heldout = read_jsonl(it_dir / Artifact.HELDOUT.value)
        adapters = [it_dir / Artifact.ADAPTER_GGUF.value]
        models: list[tuple[str, int | None]] = [("base", None), ("adapter", 0)]
        best = self.state.best_iteration
        if best is not None and best != iteration:
            adapters.append(self.run_dir / f"iteration_{best}" / Artifact.ADAPTER_GGUF.value)
            models.append(("best", 1))
        real = self.real_rows()
        results: dict[str, Any] = {}
        evaluations = {}
        real_results: dict[str, Any] = {}
        real_evaluations = {}
        records: list[dict[str, Any]] = []
        real_records: list[dict[str, Any]] = []
        async with make_server(self._eval_server_config(adapters, heldout + real)) as server:
            # Continuous batching changes greedy outputs from run to run; evaluation uses one slot, and runs
            # each model as a separate pass so the shared tools prompt stays cached.
            concurrency = self.config.eval_parallel
            async with server.client(concurrency=concurrency, adapter_count=len(adapters)) as client:
                for label, adapter in models:
                    evaluation = await self._scored(client, heldout, f"evaluate {label}", adapter)
                    evaluations[label] = evaluation
                    results[label] = evaluation.summary
                    records += [{**r, "model": label} for r in evaluation.records]
                    if not real:
                        continue
                    evaluation = await self._scored(client, real, f"real requests {label}", adapter)
                    real_evaluations[label] = evaluation
                    real_results[label] = evaluation.summary
                    real_records += [{**r, "model": label} for r in evaluation.records]
                if self._judge_on_eval_server():
                    results["judge"] = await self._judge(client, heldout, evaluations)
        if self.config.judge and isinstance(self.task, ToolTask) and not self._judge_on_eval_server():
            cfg = self.config
            async with teacher(
                model=self.judge_model,
                server_urls=cfg.judge_urls or cfg.server_urls,
                llama_server=cfg.llama_server,
                parallel=1,
                on_info=self.ui.info,
                server_model=cfg.server_model,
                engine=cfg.engine,
            ) as judge_client:
                results["judge"] = await self._judge(judge_client, heldout, evaluations)
        write_jsonl(it_dir / Artifact.PREDICTIONS.value, records)
        atomic_write_json(it_dir / Artifact.ERROR_ANALYSIS.value, _analysis(evaluations, len(heldout)))
        if real:
            write_jsonl(it_dir / Artifact.PREDICTIONS_REAL.value, real_records)
            atomic_write_json(it_dir / Artifact.ERROR_ANALYSIS_REAL.value, _analysis(real_evaluations, len(real)))
        train_result = read_json(it_dir / Artifact.TRAIN_RESULT.value)
        report_path = it_dir / Artifact.DATA_REPORT.value
        training = {k: train_result.get(k) for k in ("steps", "best_val_loss", "final_train_loss", "seconds")}
        training["hyperparameters"] = {
            k: train_result["config"][k] for k in ("epochs", "learning_rate", "r", "alpha", "dropout")
        }
        metrics = {
            **results,
            "iteration": iteration,
            "task": self.task.kind,
            "primary_metric": self.task.primary,
            "best_iteration_compared": best if "best" in results else None,
            "heldout_examples": len(heldout),
            "train_examples": len(read_jsonl(it_dir / Artifact.TRAIN.value)),
            "training": training,
            "data": read_json(report_path) if report_path.is_file() else None,
            "measured_with": "llama.cpp server, greedy decoding, every model in the same server run",
            "real": {**real_results, "rows": len(real)} if real else None,
            "decided_on": "real requests (--eval-data)" if real else "synthetic held-out set",
            "judge_model": str(self.judge_model) if "judge" in results else None,
        }
        atomic_write_json(it_dir / Artifact.METRICS.value, metrics)

    def _judge_on_eval_server(self) -> bool:
        """The judge is the teacher; when that is the base model itself, the evaluation server serves it."""
        return (
            self.config.judge
            and isinstance(self.task, ToolTask)
            and not self.config.server_urls
            and not self.config.judge_urls
            and self.judge_model == self.model
        )

    async def _judge(
        self, client: LlamaClient, heldout: list[dict], evaluations: dict[str, Evaluation]
    ) -> dict[str, Any]:
        """Final answers after tool results, scored 1-10 and compared pairwise by the judge."""
        from loraforge.evaluators import judge

        bar = self.ui.progress(len(judge.judged_cases(heldout)), "judge", "ex")
        try:
            return await judge.judge_final_answers(client, heldout, evaluations, on_done=lambda: bar.update(1))
        finally:
            bar.close()

    def _ranking(self, summary: dict[str, Any]) -> tuple[float, float]:
        """The primary metric, then the second metric as the tie-breaker."""
        first, second = self.task.metrics
        return (summary.get(first) or 0.0, summary.get(second) or 0.0)

    def _decide(self, iteration: int, it_dir: Path) -> None:
        metrics = read_json(it_dir / Artifact.METRICS.value)
        name = self.task.primary
        # Real requests, when the user gave them, decide; the synthetic held-out set is only reported.
        scores = metrics["real"] if metrics.get("real") else metrics
        mine, base = self._ranking(scores["adapter"]), self._ranking(scores["base"])
        best = self._ranking(scores["best"]) if "best" in scores else None
        previous = self.state.best_iteration
        # Promotion gate: beat the base and the best adapter so far, measured in this same evaluation run, and
        # a GGUF export that reproduces the trained adapter (a failed proof means users would get other weights).
        proof = export_proof_failure(it_dir)
        promoted = proof is None and mine[0] > base[0] and (best is None or mine > best)
        if promoted:
            if self.config.require_approval:
                hold(self.run_dir, it_dir)  # the best so far for the loop; served once approved
            else:
                promote(self.run_dir, it_dir)
            self.state.best_iteration = iteration
        where = f"{metrics['real']['rows']} real requests" if metrics.get("real") else "the synthetic held-out set"
        reason = (
            f"on {where}: adapter {name} {mine[0]:.3f} vs base {base[0]:.3f}"
            + (f" and best so far (iteration {previous}) {best[0]:.3f}" if best is not None else "")
            + ("; not promoted" if not promoted else "; promoted to final_adapter")
            + (f"; waits for `loraforge approve {self.run_dir}`" if promoted and self.config.require_approval else "")
            + (f" ({proof})" if proof else "")
        )
        plan, decisions = strategy.next_plan(
            self._plan(iteration), self._evidence(iteration, it_dir, metrics), self.config.strategy
        )
        if plan is None:
            self.state.stop_reason = f"{decisions[0].rule}: {decisions[0].evidence}"
        else:
            next_dir = self.run_dir / f"iteration_{iteration + 1}"
            next_dir.mkdir(exist_ok=True)
            atomic_write_json(next_dir / PLAN, plan.to_dict())
        entry = {
            "iteration": iteration,
            "decided_on": "real" if metrics.get("real") else "synthetic",
            "adapter": mine[0],
            "base": base[0],
            "synthetic": {"adapter": self._ranking(metrics["adapter"])[0], "base": self._ranking(metrics["base"])[0]},
            "best_before": best[0] if best else None,
            "promoted": promoted,
            "held": promoted and self.config.require_approval,  # served only once `loraforge approve` says so
            "reason": reason,
            "decisions": [d.__dict__ for d in decisions],
            "time": time.time(),
        }
        self.state.history = [h for h in self.state.history if h.get("iteration") != iteration] + [entry]
        record_history(self.run_dir, entry)
        self.ui.info(f"[iteration {iteration}] {reason}")
        for d in decisions:
            self.ui.info(f"[iteration {iteration}] {d.rule}: {d.action} ({d.evidence})")

    def _evidence(self, iteration: int, it_dir: Path, metrics: dict[str, Any]) -> strategy.Evidence:
        scores = []
        for n in range(1, iteration + 1):
            path = self.run_dir / f"iteration_{n}" / Artifact.METRICS.value
            if path.is_file():
                earlier = read_json(path)
                source = earlier["real"] if earlier.get("real") else earlier
                scores.append(source["adapter"].get(self.task.primary) or 0.0)
        log = read_jsonl(it_dir / Artifact.TRAIN_LOG.value, tolerant=True)
        judge = (metrics.get("judge") or {}).get("mean_score", {}).get("adapter")
        analysis = read_json(it_dir / Artifact.ERROR_ANALYSIS.value)
        real_path = it_dir / Artifact.ERROR_ANALYSIS_REAL.value
        # Real failures steer the data only through their pattern: never their text.
        patterns = [
            {k: f.get(k) for k in ("tool", "parameter", "error", "label")}
            for f in (read_json(real_path).get("failures", []) if real_path.is_file() else [])
        ]
        base_source = metrics["real"] if metrics.get("real") else metrics
        data = metrics.get("data") or {}
        uncovered = [gap["tool"] for gap in data.get("uncovered_tools") or []]
        thin = list((data.get("realism") or {}).get("thin_tools") or [])
        budget = self.config.time_budget_minutes
        return strategy.Evidence(
            iteration=iteration,
            max_iterations=self.config.iterations,
            scores=scores,
            base_score=base_source["base"].get(self.task.primary) or 0.0,
            failures=analysis.get("failures", []),
            pattern_failures=patterns,
            uncovered_tools=uncovered,
            thin_tools=thin,
            heldout=read_jsonl(it_dir / Artifact.HELDOUT.value),
            train_losses=[r["loss"] for r in log if "loss" in r],
            val_losses=[r["val_loss"] for r in log if "val_loss" in r],
            judge_score=judge,
            elapsed_s=sum(self.state.seconds.values()),
            iteration_seconds=[self.state.seconds[k] for k in sorted(self.state.seconds)],
            time_budget_s=budget * 60 if budget else None,
            phase_rates=eta.rates(self.state.phase_seconds, self.state.phase_sizes),
            next_rows=self._next_rows(iteration) if budget else None,  # read only when a budget needs it
            warm_epochs=self.config.training.epochs if self._warm_next() else None,
        )

    def _warm_next(self) -> bool:
        """Whether the next iteration will start from the best adapter: warm starts on and one promoted (an
        adapter of another shape is refused then, and that iteration trains from scratch, saying so)."""
        return self.config.warm_start and self.state.best_iteration is not None

    def _next_rows(self, iteration: int) -> NextRows:
        """What iteration + 1 would train on besides its new rows, and per new row: with a warm start (once an
        adapter has been promoted) the task's own rows and the replay share, else every earlier row."""
        if self._warm_next():
            return NextRows(len(self.task.seed_rows()), 1 + self.config.replay_share)
        return NextRows(len(self._earlier_rows(iteration + 1)))

    def _final_metrics(self) -> dict[str, Any]:
        if self.state.best_iteration is None:
            return {}
        return read_json(self.run_dir / f"iteration_{self.state.best_iteration}" / Artifact.METRICS.value)


def export_proof_failure(it_dir: Path) -> str | None:
    """Why the iteration's GGUF export failed its fidelity proof, or None (passed, or not checked)."""
    path = it_dir / Artifact.EXPORT_REPORT.value
    if not path.is_file():
        return None
    report = read_json(path)
    if report.get("passed"):
        return None
    return (
        f"its GGUF export failed the fidelity proof: top-1 agreement {report.get('top1_agreement_near_ties', 0):.3f} "
        f"(needs {report.get('threshold')}), log-probability error {report.get('logprob_error', float('nan')):.3f} "
        f"(limit {report.get('logprob_error_limit', float('nan')):.3f}); see export_report.json"
    )


def _analysis(evaluations: dict[str, Evaluation], total: int) -> dict[str, Any]:
    """The adapter's error analysis, with the base model's failures by error code beside it."""
    from loraforge.evaluators.error_analysis import analyse

    analysis = analyse(evaluations["adapter"].failures, total=total)
    analysis["base"] = analyse(evaluations["base"].failures, total=total)["by_error"]
    return analysis
