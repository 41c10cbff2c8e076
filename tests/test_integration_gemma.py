"""A second real architecture as the student: Gemma 3 270M (base, no chat template) through the whole loop.

The model is opt-in (`make setup-gemma`); without it these tests skip, unless LORAFORGE_REQUIRE_GEMMA is set
(CI sets it), when they fail instead.
"""

import asyncio
import json
import os

import pytest

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
    out = tmp_path / "run"
    config = RunConfig(
        tools="examples/assistant-tools.yaml",
        model=gemma,
        out=out,
        examples=24,
        iterations=1,
        seed=1,
        training=TrainConfig(epochs=3, batch_size=4, learning_rate=1e-3),
    )
    asyncio.run(Orchestrator(config, UI(quiet=True)).run())
    it = out / "iteration_1"
    # Gemma 3 has no tool role and the base model no template: loraforge's Gemma template is used, saved
    # with the adapter and in the run folder, and its turns are Gemma's.
    template = (it / Artifact.CHAT_TEMPLATE.value).read_text()
    assert "<start_of_turn>" in template and "<tool_call>" in template
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
    assert metrics["adapter"]["exact_match"] > metrics["base"]["exact_match"], metrics
