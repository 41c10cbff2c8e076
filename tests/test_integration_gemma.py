"""A second real architecture as the student: Gemma 3 270M (base, no chat template) through the whole loop.

The model is opt-in (`make setup-gemma`); without it these tests skip, unless LORAFORGE_REQUIRE_GEMMA is set
(CI sets it), when they fail instead.
"""

import asyncio
import json
import os
import subprocess
import sys

import pytest
from test_integration import EVAL_MAX_TOKENS

from loraforge.agent.config import RunConfig
from loraforge.agent.orchestrator import Orchestrator
from loraforge.constants import Artifact
from loraforge.errors import ConfigError
from loraforge.files import read_jsonl
from loraforge.models import resolve_model
from loraforge.trainers.config import TrainConfig
from loraforge.ui import UI

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gemma():
    try:
        return resolve_model("gemma3-270m")
    except ConfigError as exc:
        if os.environ.get("LORAFORGE_REQUIRE_GEMMA"):
            pytest.fail(f"LORAFORGE_REQUIRE_GEMMA is set but {exc} {exc.fix}")
        pytest.skip("Gemma 3 270M is not installed (make setup-gemma)")


def test_gemma3_student_trains_exports_proves_and_beats_its_base(gemma, tmp_path):
    """One iteration with Gemma 3 270M as student (and teacher). At 40 examples and 4 epochs its adapter got
    0.306 exact match on the 36 human-written requests against 0.167 for the base (README), and 9 of the
    first 20 (the requests that need a tool) against 0 for the base. This test trains a smaller adapter
    (24 examples, 3 epochs: less than half the steps); measured alone, it got 5 of the 20 and the right tool
    for 15, against 0 and 0 for the base, and the test took 532 s instead of 863.

    The judge is off: it is covered with the default model (tests/test_integration.py), and here it cost
    time in the evaluation for nothing this test asserts."""
    out = tmp_path / "run"
    config = RunConfig(
        tools="examples/assistant-tools.yaml",
        model=gemma,
        out=out,
        examples=24,
        iterations=1,
        seed=1,
        judge=False,
        training=TrainConfig(epochs=3, batch_size=4, learning_rate=1e-3),
    )
    asyncio.run(Orchestrator(config, UI(quiet=True)).run())
    it = out / "iteration_1"
    # Gemma 3 has no tool role and the base model no template: loraforge's Gemma template is used, saved
    # with the adapter, with Gemma's turns; a base model's assistant turns end with <eos> (chat/families.py).
    template = (it / Artifact.CHAT_TEMPLATE.value).read_text()
    assert "<start_of_turn>" in template and "<tool_call>" in template and "'<eos>'" in template
    train = read_jsonl(it / Artifact.TRAIN.value)
    assert train and all(row["messages"] for row in train)

    from gguf import GGUFReader

    reader = GGUFReader(it / Artifact.ADAPTER_GGUF.value)
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "gemma3"
    assert any(t.name.endswith("lora_a") for t in reader.tensors)

    report = json.loads((it / Artifact.EXPORT_REPORT.value).read_text())
    assert report["passed"], report  # llama.cpp with the GGUF adapter agrees with PEFT on held-out prompts

    metrics = json.loads((it / Artifact.METRICS.value).read_text())
    assert metrics["adapter"]["n"] == metrics["base"]["n"] > 0

    # Through llama.cpp, on requests that people wrote for these tools (which no run sees), the adapter
    # beats the base: the base answers every request in text.
    # The first 20, as in test_eval_command_on_a_twenty_row_file: each generation of the base (which answers in
    # text, up to the token limit) costs seconds with this model.
    scored = tmp_path / "eval"
    data = tmp_path / "human20.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in read_jsonl("benchmarks/data/heldout_human.jsonl")[:20]))
    done = subprocess.run(
        [sys.executable, "-m", "loraforge", "eval", "--data", str(data)]
        + ["--tools", "examples/assistant-tools.yaml", "--adapter", str(it), "--model", str(gemma)]
        + ["--out", str(scored), "--quiet", "--max-tokens", EVAL_MAX_TOKENS],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    human = json.loads((scored / "metrics.json").read_text())
    assert human["adapter"]["n"] == human["base"]["n"] == 20
    assert human["adapter"]["exact_match"] > human["base"]["exact_match"], human
    assert human["adapter"]["tool_name_accuracy"] > human["base"]["tool_name_accuracy"], human
