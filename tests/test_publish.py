"""Publishing to the Hub: the dry-run folder, and an upload to a local server standing in for the Hub."""

import asyncio
import base64
import json
import socket
import threading

import pytest
from tiny import tiny_model

from loraforge.cli import main

LOCAL_BASE = "/home/someone/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def tiny_peft(folder):
    from peft import LoraConfig, get_peft_model

    get_peft_model(tiny_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).save_pretrained(
        folder
    )


@pytest.fixture
def adapter(tmp_path):
    """A run's final_adapter/: PEFT files, GGUF, template, record with a local base path, metrics."""
    run = tmp_path / "run"
    folder = run / "final_adapter"
    tiny_peft(folder)
    (folder / "adapter.gguf").write_bytes(b"GGUF" + bytes(64))
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    (folder / "loraforge.json").write_text(
        json.dumps({"base_model": LOCAL_BASE, "tools": [{"function": {"name": "get_weather"}}]})
    )
    (folder / "metrics.json").write_text(
        json.dumps({"base": {"exact_match": 0.1}, "adapter": {"exact_match": 0.6}, "heldout_examples": 20})
    )
    (folder / "SOURCE").write_text("iteration_1\n")
    (run / "iteration_1").mkdir()
    row = {"messages": [{"role": "user", "content": "weather in Oslo tomorrow?"}], "tools": []}
    (run / "iteration_1" / "train.jsonl").write_text(json.dumps(row) + "\n")
    return folder


def test_the_dry_run_folder_is_ready_for_the_hub_and_loads_back_with_peft(adapter, tmp_path, capsys):
    from peft import PeftModel

    out = tmp_path / "to-upload"
    assert main(["upload", str(adapter), "--dry-run", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weather in Oslo tomorrow?" in printed  # the privacy step shows the training data
    names = {p.name for p in out.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "adapter.gguf",
        "chat_template.jinja",
        "README.md",
    } <= names
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "library_name: peft" in card and "| exact_match | 0.100 | 0.600 |" in card
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    for path in out.iterdir():  # no local path leaves the machine
        if path.suffix in (".json", ".md", ".jinja"):
            assert "/home/someone" not in path.read_text()
    loaded = PeftModel.from_pretrained(tiny_model(), str(out))
    assert any("lora_A" in name for name, _ in loaded.named_parameters())


IO_YAML = """model: null
response_format: '{"type": "object", "properties": {"score": {"type": "number"}}}'
instruction: null
parameters:
  max_completion_tokens: 6
"""


def test_an_intrinsic_is_published_with_its_io_yaml(adapter, tmp_path):
    io = tmp_path / "io.yaml"
    io.write_text(IO_YAML)
    out = tmp_path / "intrinsic"
    assert main(["upload", str(adapter), "--dry-run", str(out), "--intrinsic", "--io-yaml", str(io)]) == 0
    assert (out / "io.yaml").read_text() == IO_YAML
    card = (out / "README.md").read_text()
    assert "- intrinsic" in card and "CustomIntrinsicAdapter" in card


@pytest.mark.parametrize(
    "args, text, message",
    [
        (["--intrinsic"], None, "go together"),
        (["--io-yaml", "IO"], IO_YAML, "go together"),
        (["--intrinsic", "--io-yaml", "IO"], "- a\n- list\n", "not a mapping"),
        (["--intrinsic", "--io-yaml", "IO"], "a: [1,\n", "line 2"),
        (["--intrinsic", "--io-yaml", "IO"], "a: &x 1\nb: *x\n", "aliases"),
        (["--intrinsic", "--io-yaml", "missing.yaml"], None, "no such file"),
    ],
)
def test_a_bad_intrinsic_request_is_one_clean_error_and_writes_nothing(adapter, tmp_path, capsys, args, text, message):
    io = tmp_path / "io.yaml"
    if text is not None:
        io.write_text(text)
    args = [str(io) if a == "IO" else str(tmp_path / a) if a.endswith(".yaml") else a for a in args]
    out = tmp_path / "intrinsic"
    assert main(["upload", str(adapter), "--dry-run", str(out), *args]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


class FakeHub:
    """The Hub routes an upload uses (create repo, check the card's YAML, preupload, commit), on 127.0.0.1."""

    def __init__(self, fail_commit=False):
        self.fail_commit, self.received = fail_commit, {}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        assert ready.wait(10)

    def _serve(self, ready):
        from aiohttp import web

        async def handle(request):
            path = request.path
            if path == "/api/validate-yaml":  # the Hub checks a model card's metadata before the commit
                return web.json_response({"errors": [], "warnings": []})
            if path == "/api/repos/create":
                body = await request.json()
                return web.json_response({"url": f"{self.url}/{body.get('organization')}/{body['name']}"})
            if path.endswith("/preupload/main"):
                files = (await request.json())["files"]
                return web.json_response(
                    {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                )
            if "/commit/" in path:
                if self.fail_commit:  # refused (a 5xx would be retried for a while first)
                    return web.json_response({"error": "storage quota exceeded"}, status=403)
                for line in (await request.text()).splitlines():
                    item = json.loads(line)
                    if item.get("key") == "file":
                        self.received[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                return web.json_response(
                    {"commitUrl": f"{self.url}/me/adapter/commit/{'a' * 40}", "commitOid": "a" * 40}
                )
            return web.json_response({"error": "not found"}, status=404)

        async def main_loop():
            app = web.Application(client_max_size=1 << 28)
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            ready.set()
            await asyncio.Event().wait()

        asyncio.run(main_loop())


def test_an_upload_sends_the_staged_folder_and_records_it_only_when_the_hub_accepted_it(adapter, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)  # the tests run offline; this is local
    failing = FakeHub(fail_commit=True)
    monkeypatch.setenv("HF_ENDPOINT", failing.url)
    assert main(["upload", str(adapter), "--repo-id", "me/adapter", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "nothing was recorded as uploaded" in err and "403" in err
    assert not (adapter / "upload.json").exists()

    hub = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert main(["upload", str(adapter), "--repo-id", "me/adapter", "--yes"]) == 0
    assert {"adapter_model.safetensors", "adapter.gguf", "README.md", "adapter_config.json"} <= set(hub.received)
    assert hub.received["adapter.gguf"] == (adapter / "adapter.gguf").read_bytes()
    assert json.loads((adapter / "upload.json").read_text())["repo_id"] == "me/adapter"
    assert "hf_test_token" not in capsys.readouterr().out


def test_an_upload_asks_first_and_needs_a_repository(adapter, tmp_path):
    assert main(["upload", str(adapter)]) == 2  # no --repo-id and no --dry-run
    assert main(["upload", str(tmp_path / "missing"), "--dry-run", str(tmp_path / "x")]) == 2
    bare = tmp_path / "bare"
    bare.mkdir()
    assert main(["upload", str(bare), "--dry-run", str(tmp_path / "y")]) == 2  # nothing exported there
