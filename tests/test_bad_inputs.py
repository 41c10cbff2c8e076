"""Bad input gets a one-paragraph error naming what to fix, never a traceback (issue 13)."""

import json
import re
import subprocess
import sys

import pytest

from loraforge.agent.config import RunConfig
from loraforge.agent.strategy import StrategyConfig
from loraforge.errors import ConfigError
from loraforge.trainers.config import TrainConfig

TOOLS = "examples/api-tools.json"
# A 490-byte 'billion laughs' file: nested aliases that expand to 9**8 nodes.
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh")
)


@pytest.mark.parametrize(
    "values, named",
    [
        ({"time_budget_minutes": -1}, "time_budget_minutes"),
        ({"min_samples": -1, "labels": "x.jsonl"}, "min_samples"),
        ({"min_error_rate": 7, "labels": "x.jsonl"}, "min_error_rate"),
        ({"parallel": 0}, "parallel"),
        ({"eval_max_tokens": 0}, "eval_max_tokens"),
        ({"strategy": {"target": 5}}, "target"),
        ({"strategy": {"target": -1}}, "target"),
        ({"strategy": {"growth": 0.5}}, "growth"),
    ],
)
def test_run_settings_out_of_range_are_refused(values, named):
    with pytest.raises(ConfigError, match=named):
        RunConfig(**values)


@pytest.mark.parametrize(
    "values, named",
    [
        ({"alpha": 0}, "alpha"),
        ({"val_fraction": 2}, "val_fraction"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"alpha": float("nan")}, "alpha"),
        ({"learning_rate": float("inf")}, "learning_rate"),
    ],
)
def test_training_settings_out_of_range_are_refused(values, named):
    with pytest.raises(ConfigError, match=named):
        TrainConfig(**values)


def test_sensible_settings_pass():
    RunConfig(time_budget_minutes=30, strategy=StrategyConfig(target=1.0))
    TrainConfig(alpha=16, val_fraction=0.0)


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["generate", "--tools", TOOLS, "--n", "5", "--out", "x.jsonl", "--parallel", "0"], "--parallel"),
        (["generate", "--tools", TOOLS, "--n", "-1", "--out", "x.jsonl"], "--n"),
        (["train", "x.jsonl", "--outfile", "x.jsonl", "--checkpoint-every", "-1"], "--checkpoint-every"),
        (["run", "--tools", TOOLS, "--target", "5"], "target"),
        (["run", "--tools", TOOLS, "--min-error-rate", "7"], "min_error_rate"),
        (["run", "--tools", TOOLS, "--time-budget", "nan"], "time_budget"),
        (["generate", "--tools", TOOLS, "--n", "5", "--out", "x.jsonl", "--compose-rate", "nan"], "compose"),
    ],
)
def test_bad_numeric_flags_exit_with_a_message_and_write_nothing(tmp_path, argv, flag):
    argv = [str(tmp_path / a) if a == "x.jsonl" else a for a in argv]
    if argv[0] == "run":
        argv += ["--out", str(tmp_path / "run")]
    done = subprocess.run([sys.executable, "-m", "loraforge", *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and flag in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content",
    [b"my notes, not data\n", b'{"messages": []}\n{"messages": []}\n', b"\x89PNG\r\n\x1a\n\x00\x00"],
)
def test_generate_never_writes_into_a_file_it_did_not_make(tmp_path, content):
    out = tmp_path / "notes.txt"
    out.write_bytes(content)
    argv = [sys.executable, "-m", "loraforge", "generate", "--tools", TOOLS, "--n", "5", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "not a loraforge data file" in done.stderr and "notes.txt:1" in done.stderr
    assert out.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _cli(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loraforge", *argv], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.mark.parametrize(
    "config, said",
    [
        ("- a\n- b\n", "holds a list"),
        ("server_urls: [5]\n", "server_urls"),
        ("server_urls: ['notaurl']\n", "not a server URL"),
        ("tools:\n" + "  " * 0 + "[" * 3000 + "]" * 3000 + "\n", "config"),
        (BOMB + "strategy: *h\n", "aliases"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "UTF-8"),
        ("training:\n  learning_rate: .nan\n", "learning_rate"),
        ("generation:\n  style_weights: {single: x}\n", "style_weights"),
    ],
)
def test_bad_config_files_are_refused_without_a_run_folder(tmp_path, config, said):
    path = tmp_path / "lf.yaml"
    path.write_bytes(config.encode("utf-8") if isinstance(config, str) else config)
    done = _cli("run", "--config", str(path), "--tools", TOOLS, "--out", str(tmp_path / "run"))
    assert done.returncode != 0 and "Traceback" not in done.stderr and said in done.stderr
    assert str(path) in done.stderr
    assert not (tmp_path / "run").exists()


def test_bad_server_urls_and_out_paths_are_refused(tmp_path):
    for argv in (
        ["run", "--tools", TOOLS, "--server-url", "notaurl", "--out", str(tmp_path / "run")],
        ["generate", "--tools", TOOLS, "--n", "3", "--out", str(tmp_path / "g.jsonl"), "--server-url", "ftp://x"],
    ):
        done = _cli(*argv)
        assert done.returncode != 0 and "Traceback" not in done.stderr and "not a server URL" in done.stderr
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    done = _cli("run", "--tools", TOOLS, "--out", str(afile))
    assert done.returncode != 0 and "is a file" in done.stderr and afile.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("record", ["{}", "[1, 2]", '{"config": 3}'])
def test_resume_of_a_folder_loraforge_did_not_write_is_refused(tmp_path, record):
    (tmp_path / "config.json").write_text(record)
    done = _cli("run", "--resume", str(tmp_path))
    assert done.returncode != 0 and "Traceback" not in done.stderr and "not a loraforge run record" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def _tool(parameters: dict) -> dict:
    return {"type": "function", "function": {"name": "f", "description": "Does f.", "parameters": parameters}}


def _nested(levels: int) -> dict:
    inner = {"type": "string"}
    for _ in range(levels):
        inner = {"type": "object", "properties": {"x": inner}}
    return {"type": "object", "properties": {"a": inner}}


@pytest.mark.parametrize(
    "text, said",
    [
        (BOMB + "tools:\n  - {name: t, description: x, parameters: {properties: {p: {anyOf: *h}}}}\n", "aliases"),
        ("[" * 3000 + "]" * 3000, "nested too deeply"),
        ('{"a":\t' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),  # not YAML (a tab): read as JSON
        (json.dumps([_tool({"type": "object", "properties": {"a": {"$ref": "#"}}})]), "$ref"),
        (json.dumps([_tool(_nested(60))]), "nested more than"),
        (
            json.dumps([_tool({"type": "object", "properties": {"a": {"type": "array", "minItems": 10**8}}})]),
            "minItems",
        ),
    ],
)
def test_hostile_tools_files_are_refused_quickly(tmp_path, text, said):
    import time

    from loraforge.tools import load_tools

    path = tmp_path / ("tools.json" if text.startswith(("[", "{")) else "tools.yaml")
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=re.escape(said)) as info:
        load_tools(path)
    assert time.monotonic() - started < 10
    assert str(path) in str(info.value) and len(str(info.value)) < 400


def test_a_schema_error_message_is_kept_short(tmp_path):
    from loraforge.tools import load_tools

    path = tmp_path / "tools.json"
    path.write_text(json.dumps([_tool({"type": "object", "properties": {"p": {"anyOf": [["x" * 50] * 200]}}})]))
    with pytest.raises(ConfigError) as info:
        load_tools(path)
    assert len(str(info.value)) < 600


@pytest.mark.parametrize(
    "row, said",
    [
        ({"messages": [{"content": "hi"}], "tool_calls": []}, "role"),
        ({"messages": [{"role": "user", "content": "hi"}], "tool_calls": [{"arguments": {}}]}, "name"),
        ({"messages": [{"role": "system", "content": "x"}], "tool_calls": []}, "no user turn"),
        ({"messages": [{"role": "user", "content": "hi"}], "tool_calls": {"name": "f"}}, "must be a list"),
        ({"messages": [{"role": ["user"], "content": "hi"}], "tool_calls": []}, "role"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "tool_calls": [{"name": "f", "arguments": "city=Oslo"}]},
            "JSON object",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "tool_calls": [], "tools": [{"name": "f"}]}, "OpenAI form"),
        ({"messages": [{"role": "user", "content": "hi"}], "tool_calls": [], "tools": {"f": 1}}, "must be a list"),
        ({"messages": [{"role": "user", "content": "hi"}], "tool_calls": [], "meta": "x"}, "'meta' must be"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "tool_calls": [{"name": "f", "acceptable": [1]}]},
            "acceptable",
        ),
        (  # found by the Hypothesis suite: a conversation's assistant turn with calls that are not a list
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": True}]},
            "tool_calls must be a list",
        ),
    ],
)
def test_bad_eval_rows_are_named_before_any_server_starts(tmp_path, row, said):
    from loraforge.evaluators.eval_cmd import load_eval_rows

    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "ok"}], "tool_calls": []}) + "\n")
    path.write_text(path.read_text() + json.dumps(row) + "\n")
    with pytest.raises(ConfigError, match=said) as info:
        load_eval_rows(path, tools=[])
    assert "line 2" in str(info.value)


def test_eval_of_a_binary_file_or_into_a_file_is_a_clean_error(tmp_path):
    binary = tmp_path / "data.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    done = _cli("eval", "--data", str(binary), "--tools", TOOLS, "--out", str(tmp_path / "o"))
    assert done.returncode != 0 and "Traceback" not in done.stderr and "UTF-8" in done.stderr
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}], "tool_calls": []}) + "\n")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    done = _cli("eval", "--data", str(good), "--tools", TOOLS, "--out", str(afile))
    assert done.returncode != 0 and "is a file" in done.stderr and afile.read_text() == "keep"


def test_a_choice_setting_lists_its_choices(tmp_path):
    from loraforge.agent.config import load_config

    path = tmp_path / "lf.yaml"
    path.write_text("training:\n  device: tpu\n")
    with pytest.raises(ConfigError, match="one of 'auto', 'cpu', 'cuda', 'mps', got 'tpu'"):
        load_config(path)


@pytest.mark.parametrize("text", ["../../etc", "/tmp/elsewhere", "iteration_1/../../x", "rm -rf"])
def test_a_hand_edited_active_file_cannot_point_outside_the_run(tmp_path, text):
    from loraforge.agent.registry import active, rollback

    (tmp_path / "ACTIVE").write_text(text + "\n")
    with pytest.raises(ConfigError, match="not an adapter of this run"):
        active(tmp_path)
    with pytest.raises(ConfigError):
        rollback(tmp_path, "base")


def test_train_into_a_file_is_refused(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"item": "a", "label": "x"}) + "\n")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    done = _cli("train", str(data), "--outfile", str(afile))
    assert done.returncode != 0 and "is a file" in done.stderr and afile.read_text() == "keep"


def test_zero_stays_a_valid_checkpoint_interval():
    from loraforge.cli import build_parser

    args = build_parser().parse_args(["train", "rows.jsonl", "--outfile", "out", "--checkpoint-every", "0"])
    assert args.checkpoint_every == 0


@pytest.mark.parametrize("command", ["eval", "train"])
def test_a_users_folder_is_never_overwritten(tmp_path, command):
    """eval and train write into a folder; a file of the user's with one of their names is left alone and
    named in the error, before any server or model starts. A folder loraforge made is reused."""
    good = tmp_path / "good.jsonl"
    if command == "eval":
        good.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}], "tool_calls": []}) + "\n")
        argv, theirs = ["eval", "--data", str(good), "--tools", TOOLS, "--out"], "predictions.jsonl"
    else:
        good.write_text(json.dumps({"item": "a", "label": "x"}) + "\n")
        argv, theirs = ["train", str(good), "--outfile"], "README.md"
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / theirs).write_text("keep")
    (folder / "notes.txt").write_text("keep too")
    done = _cli(*argv, str(folder))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert theirs in done.stderr and "did not write" in done.stderr
    assert (folder / theirs).read_text() == "keep" and sorted(p.name for p in folder.iterdir()) == sorted(
        [theirs, "notes.txt"]
    )


def test_an_output_folder_loraforge_made_is_reused(tmp_path):
    from loraforge.files import claim_output_folder

    out = claim_output_folder(tmp_path / "new", "--out", ["metrics.json"])
    (out / "metrics.json").write_text("{}")  # written by an earlier eval
    assert claim_output_folder(out, "--out", ["metrics.json"]) == out
    old = tmp_path / "old-adapter"  # made by a loraforge from before the marker: its loraforge.json says so
    old.mkdir()
    (old / "loraforge.json").write_text("{}")
    (old / "adapter.gguf").write_bytes(b"GGUF")
    assert claim_output_folder(old, "--outfile", ["adapter.gguf"], owned_by=["loraforge.json"]) == old
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "adapter.gguf").write_bytes(b"mine")
    with pytest.raises(ConfigError, match="already holds adapter.gguf"):
        claim_output_folder(theirs, "--outfile", ["adapter.gguf"], owned_by=["loraforge.json"])
    assert (theirs / "adapter.gguf").read_bytes() == b"mine"


@pytest.mark.parametrize("command", ["train", "eval", "run"])
def test_a_chat_template_that_renders_no_tool_calls_is_refused_before_any_work(tmp_path, command):
    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
    data = tmp_path / "rows.jsonl"
    if command == "train":
        data.write_text(json.dumps({"item": "a", "label": "x"}) + "\n")
        argv = ["train", str(data), "--outfile", str(tmp_path / "out")]
    elif command == "eval":
        data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}], "tool_calls": []}) + "\n")
        argv = ["eval", "--data", str(data), "--tools", TOOLS, "--out", str(tmp_path / "out")]
    else:
        argv = ["run", "--tools", TOOLS, "--out", str(tmp_path / "out"), "--quiet"]
    done = _cli(*argv, "--chat-template", str(plain))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "plain.jinja" in done.stderr and "renders without" in done.stderr
    assert not (tmp_path / "out").exists()


def test_export_never_overwrites_a_gguf_it_did_not_write(tmp_path):
    folder = tmp_path / "peft-from-elsewhere"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 16}')
    (folder / "adapter.gguf").write_bytes(b"GGUF theirs")
    done = _cli("export", str(folder))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "adapter.gguf" in done.stderr and str(folder) in done.stderr
    assert (folder / "adapter.gguf").read_bytes() == b"GGUF theirs"
    assert sorted(p.name for p in folder.iterdir()) == ["adapter.gguf", "adapter_config.json"]


@pytest.mark.parametrize("text", ["not json {", "[1, 2]"])
def test_export_of_a_folder_with_a_broken_loraforge_json_names_it(tmp_path, text):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "loraforge.json").write_text(text)
    done = _cli("export", str(folder))
    assert done.returncode != 0 and "Traceback" not in done.stderr and "loraforge.json" in done.stderr


def test_export_of_a_missing_folder_is_a_clean_error(tmp_path):
    done = _cli("export", str(tmp_path / "nope"))
    assert done.returncode != 0 and "Traceback" not in done.stderr and "no such adapter folder" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_generate_never_overwrites_a_side_report_it_did_not_write(tmp_path):
    theirs = tmp_path / "g.report.json"
    theirs.write_text("my report, not loraforge's")
    done = _cli("generate", "--tools", TOOLS, "--n", "3", "--out", str(tmp_path / "g.jsonl"))
    assert done.returncode != 0 and "Traceback" not in done.stderr and "g.report.json" in done.stderr
    assert theirs.read_text() == "my report, not loraforge's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.report.json"]


@pytest.mark.parametrize(
    "argv, said",
    [
        (["check", "--model", "{bad_gguf}"], "damaged or cut short"),
        (["eval", "--data", "{rows}", "--adapter", "{peft}"], "No GGUF adapter"),
        (["export", "{peft}"], "adapter_model.safetensors"),
        (["report", "{notrun}"], "not a loraforge run folder"),
        (["rollback", "{notrun}", "--to", "abc"], "no active adapter"),
        (["run", "--resume", "{notrun}"], "no run to resume"),
    ],
)
def test_model_files_adapters_and_run_folders_of_the_wrong_kind_are_named(tmp_path, argv, said):
    (tmp_path / "bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00cut short")
    (tmp_path / "peft").mkdir()
    (tmp_path / "peft" / "adapter_config.json").write_text('{"r": "eight"')
    (tmp_path / "notrun").mkdir()
    (tmp_path / "rows.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    places = {"bad_gguf": "bad.gguf", "peft": "peft", "notrun": "notrun", "rows": "rows.jsonl"}
    done = _cli(*(a.format(**{k: str(tmp_path / v) for k, v in places.items()}) for a in argv), cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr + done.stdout
    assert said in done.stderr + done.stdout
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("loader", ["tools", "config"])
def test_a_binary_tools_or_config_file_is_a_clean_error(tmp_path, loader):
    from loraforge.agent.config import load_config
    from loraforge.tools import load_tools

    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        (load_tools if loader == "tools" else load_config)(path)


def test_train_and_generate_refuse_empty_binary_and_file_outputs_without_a_traceback(tmp_path):
    empty, binary, afile = tmp_path / "empty.jsonl", tmp_path / "bin.jsonl", tmp_path / "afile"
    empty.write_text("")
    binary.write_bytes(b"\xc5\xff\x00\x10")
    afile.write_text("keep")
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(row) + "\n")
    for args, said in [
        (("train", str(empty), "--outfile", str(tmp_path / "o1")), "no training rows"),
        (("train", str(binary), "--outfile", str(tmp_path / "o2")), "UTF-8"),
        (("train", str(good), "--outfile", str(afile)), "is a file"),
        (("generate", "--tools", str(binary), "--out", str(tmp_path / "g.jsonl"), "--n", "2"), "UTF-8"),
        (("generate", "--tools", TOOLS, "--out", str(afile), "--n", "2"), "not a loraforge data file"),
    ]:
        done = _cli(*args)
        assert done.returncode != 0 and "Traceback" not in done.stderr, (args, done.stderr[-600:])
        assert said in done.stderr, (args, done.stderr[-600:])
    assert afile.read_text() == "keep"


def test_init_into_a_folder_or_under_a_file_is_a_clean_error(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for argv in (["init", str(tmp_path), "--force"], ["init", str(afile / "lf.yaml")]):
        done = _cli(*argv)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert str(tmp_path) in done.stderr
    assert afile.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_eval_of_an_adapter_made_for_another_base_stops_before_any_server(tmp_path, write_gguf):
    import numpy as np

    base = write_gguf(tmp_path / "base.gguf", "llama", {"blk.0.attn_q.weight": np.zeros((64, 48), np.float32)})
    adapter = write_gguf(tmp_path / "a.gguf", "llama", {"blk.0.attn_q.weight.lora_a": np.zeros((4, 32), np.float32)})
    data = tmp_path / "eval.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}], "tool_calls": []}) + "\n")
    out = tmp_path / "out"
    done = _cli(
        "eval",
        "--data",
        str(data),
        "--tools",
        TOOLS,
        "--adapter",
        str(adapter),
        "--model",
        str(base),
        "--out",
        str(out),
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "does not fit the base model" in done.stderr and "32 inputs" in done.stderr and not out.exists()
