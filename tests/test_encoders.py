"""Encoder adapters without a model: metrics, row formats, splits, settings, adapter checks, unpacking."""

import json
import zipfile

import pytest

from loraforge.agent.config import RunConfig
from loraforge.agent.encoder_run import next_settings
from loraforge.encoders import adapters
from loraforge.encoders.config import EncoderConfig
from loraforge.encoders.data import (
    LabeledText,
    check_split,
    labeled_text,
    load_labeled_texts,
    load_pairs,
    split_labeled,
)
from loraforge.encoders.evaluate import accuracy, corpus_of, macro_f1, recall_at_k
from loraforge.encoders.model import unpack
from loraforge.errors import ConfigError


def test_accuracy_and_macro_f1_by_hand():
    gold = ["a", "a", "b", "b"]
    predicted = ["a", "b", "b", "b"]
    assert accuracy(gold, predicted) == 0.75
    # a: tp 1, fp 0, fn 1 -> 2/3; b: tp 2, fp 1, fn 0 -> 4/5
    assert macro_f1(gold, predicted, ["a", "b"]) == pytest.approx((2 / 3 + 4 / 5) / 2)
    # a label that is neither predicted nor present counts 0 and pulls the mean down
    assert macro_f1(gold, predicted, ["a", "b", "c"]) == pytest.approx((2 / 3 + 4 / 5) / 3)


def test_recall_at_k_counts_the_relevant_document_within_the_first_k():
    rankings = [[2, 0, 1], [1, 2, 0], [0, 1, 2]]
    relevant = [0, 0, 0]
    assert recall_at_k(rankings, relevant, 1) == pytest.approx(1 / 3)
    assert recall_at_k(rankings, relevant, 2) == pytest.approx(2 / 3)
    assert recall_at_k(rankings, relevant, 3) == 1.0


def test_nli_rows_keep_premise_and_hypothesis_apart_and_corrections_win():
    row = labeled_text({"premise": "P.", "hypothesis": "H.", "correct_label": "supports", "original_label": "x"})
    assert row == LabeledText("P.", "H.", "supports")
    assert labeled_text({"item": "text", "label": 3}) == LabeledText("text", None, "3")
    # the feedback snapshot's rows ({"item", "label"} with the pair kept) still read as pairs
    snap = {"item": "Premise: P.\nHypothesis: H.", "label": "refutes", "premise": "P.", "hypothesis": "H."}
    assert labeled_text(snap) == LabeledText("P.", "H.", "refutes")
    assert labeled_text({"premise": "P.", "label": "x"}) is None
    # a row that carries both: the correction wins, as it does in the feedback database
    assert labeled_text({"item": "t", "label": "neutral", "correct_label": "refutes"}).label == "refutes"


def test_a_split_with_nothing_to_train_or_score_is_refused():
    one_premise = [LabeledText("same premise", f"h{i}", "ab"[i % 2]) for i in range(6)]
    train, heldout = split_labeled(one_premise, 0.2, seed=0)
    with pytest.raises(ConfigError, match="too little to train on"):
        check_split(train, heldout, "nli.jsonl")
    with pytest.raises(ConfigError, match="nothing can be scored"):
        check_split(one_premise, [], "nli.jsonl")
    check_split(one_premise[:4], one_premise[4:], "nli.jsonl")  # two labels to train on, rows to score


def test_an_encoder_iteration_can_wait_for_approval_and_be_rolled_back_to(tmp_path):
    from loraforge.agent.registry import approve, hold, pending, rollback

    run = tmp_path / "run"
    for number in (1, 2):
        folder = run / f"iteration_{number}"
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(b"w%d" % number)
        (folder / "loraforge.json").write_text(json.dumps({"model_kind": "encoder", "labels": ["a", "b"]}))
    hold(run, run / "iteration_2")
    assert pending(run) == "iteration_2"
    assert approve(run) == "iteration_2"
    assert (run / "final_adapter" / "adapter_model.safetensors").read_bytes() == b"w2"
    assert rollback(run, 1) == "iteration_1"
    assert (run / "final_adapter" / "adapter_model.safetensors").read_bytes() == b"w1"
    (run / "iteration_1" / "loraforge.json").write_text(json.dumps({"labels": ["a"]}))  # not an encoder's
    with pytest.raises(ConfigError, match="no exported adapter"):
        rollback(run, 1)


def test_a_bad_labeled_line_is_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"item": "a", "label": "x"}\n{"text": "b"}\n')
    with pytest.raises(ConfigError, match="line 2"):
        load_labeled_texts(path)
    path.write_text('{"item": "a", "label": "x"}\n{"item": "b", "label": "x"}\n')
    with pytest.raises(ConfigError, match="two labels"):
        load_labeled_texts(path)


def test_pairs_accept_query_or_anchor_and_name_a_bad_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"query": f"q{i}", "positive": f"d{i}"} for i in range(4)] + [
        {"anchor": "q", "positive": "d", "negative": "n"}
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = load_pairs(path)
    assert pairs[-1].negative == "n" and pairs[-1].query == "q"
    documents, relevant = corpus_of(pairs)
    assert documents[relevant[-1]] == "d" and "n" in documents and len(documents) == 6
    path.write_text(path.read_text() + '{"query": "q", "positive": ""}\n')
    with pytest.raises(ConfigError, match="line 6"):
        load_pairs(path)


def test_pairs_are_held_out_by_premise_and_single_texts_per_label():
    rows = [LabeledText(f"premise {i // 2}", f"hyp {i}", ["supports", "refutes", "neutral"][i % 3]) for i in range(60)]
    train, heldout = split_labeled(rows, 0.2, seed=0)
    assert len(train) + len(heldout) == 60 and 10 <= len(heldout) <= 14
    assert {r.text for r in train}.isdisjoint({r.text for r in heldout})
    assert split_labeled(rows, 0.2, seed=0) == (train, heldout)  # the seed decides
    assert split_labeled(rows, 0.2, seed=1) != (train, heldout)
    singles = [LabeledText(f"t{i}", None, "a" if i < 20 else "b") for i in range(30)]
    train, heldout = split_labeled(singles, 0.2, seed=0)
    assert sorted(r.label for r in heldout) == ["a"] * 4 + ["b"] * 2


@pytest.mark.parametrize(
    "values, message",
    [
        ({"r": 0}, "r must"),
        ({"dropout": 1.0}, "dropout"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"target_modules": []}, "empty"),
    ],
)
def test_encoder_settings_are_checked(values, message):
    with pytest.raises(ConfigError, match=message):
        EncoderConfig(**values)


def test_next_settings_trains_longer_when_underfit_and_regularises_when_overfit():
    config = EncoderConfig(epochs=10, dropout=0.1, seed=0)
    longer, why = next_settings(config, {"train_accuracy": 0.6, "accuracy": 0.5})
    assert longer.epochs == 20 and longer.dropout == 0.1 and "epochs 20" in why
    regular, why = next_settings(config, {"train_accuracy": 1.0, "accuracy": 0.5})
    assert regular.epochs == 10 and regular.dropout == 0.2 and regular.seed == 1 and "dropout" in why


def test_an_encoder_run_refuses_tools(tmp_path):
    tools = tmp_path / "t.json"
    tools.write_text("[]")
    with pytest.raises(ConfigError, match="classify, not to call tools"):
        RunConfig(tools=tools, model_kind="encoder", out=tmp_path / "run")
    labels = tmp_path / "l.jsonl"
    with pytest.raises(ConfigError, match="a run trains a classifier"):
        RunConfig(labels=labels, model_kind="encoder", encoder={"task": "embedding"}, out=tmp_path / "run")


def _base(tmp_path, hidden=384):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": hidden}))
    return base


def _adapter(tmp_path, task_type="SEQ_CLS", meta=None, peft_type="LORA", weights=True):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, "task_type": task_type}))
    if weights:
        (folder / "adapter_model.safetensors").write_bytes(b"x")
    if meta is not None:
        (folder / "loraforge.json").write_text(json.dumps(meta))
    return folder


def test_adapter_check_names_each_problem(tmp_path):
    base = _base(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        adapters.check(tmp_path / "nowhere", base, "embedding")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        adapters.check(tmp_path / "file", base, "embedding")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no adapter_config.json"):
        adapters.check(empty, base, "embedding")


@pytest.mark.parametrize(
    "kwargs, task, message",
    [
        ({"weights": False}, "sequence-classification", "weights are missing"),
        ({"peft_type": "IA3"}, "sequence-classification", "only LoRA"),
        ({"task_type": "FEATURE_EXTRACTION"}, "sequence-classification", "runs the sequence-classification task"),
        ({"meta": {"base_fingerprint": "0000"}, "task_type": "FEATURE_EXTRACTION"}, "embedding", "another base"),
        ({"meta": {"base_fingerprint": "THIS"}}, "sequence-classification", "labels"),
        ({"meta": {}, "task_type": "FEATURE_EXTRACTION"}, "embedding", "not trained by loraforge"),
    ],
)
def test_a_mismatched_adapter_is_refused(tmp_path, kwargs, task, message):
    base = _base(tmp_path)
    if kwargs.get("meta", {}).get("base_fingerprint") == "THIS":
        kwargs["meta"]["base_fingerprint"] = adapters.base_fingerprint(base)
    with pytest.raises(ConfigError, match=message):
        adapters.check(_adapter(tmp_path, **kwargs), base, task)


def test_the_fingerprint_tells_two_fine_tunes_of_one_architecture_apart(tmp_path):
    base = _base(tmp_path)
    (base / "model.safetensors").write_bytes(b"a" * 4096)
    first = adapters.base_fingerprint(base)
    (base / "model.safetensors").write_bytes(b"b" * 4096)
    assert adapters.base_fingerprint(base) != first


def test_an_outside_adapter_that_names_this_base_passes(tmp_path):
    base = _base(tmp_path)
    folder = _adapter(tmp_path, task_type="FEATURE_EXTRACTION")
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(base)}))
    assert adapters.check(folder, base, "embedding") == {}


def test_an_adapter_of_this_base_passes_the_check(tmp_path):
    base = _base(tmp_path)
    meta = {"base_fingerprint": adapters.base_fingerprint(base), "labels": ["a", "b"]}
    assert adapters.check(_adapter(tmp_path, meta=meta), base, "sequence-classification")["labels"] == ["a", "b"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 768}))
    assert adapters.base_fingerprint(other) != adapters.base_fingerprint(base)


def test_unpack_once_and_refuse_paths_that_escape(tmp_path):
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("config.json", "{}")
        bundle.writestr("model.safetensors", "w")
    target = unpack(archive, tmp_path / "cache" / "m")
    assert (target / "config.json").read_text() == "{}"
    (target / "config.json").write_text('{"kept": 1}')
    assert (unpack(archive, target) / "config.json").read_text() == '{"kept": 1}'  # not unpacked twice
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as bundle:
        bundle.writestr("../evil.txt", "x")
    with pytest.raises(ConfigError, match="unsafe path"):
        unpack(bad, tmp_path / "cache" / "bad")
    assert not (tmp_path / "cache" / "evil.txt").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["m"]  # no scratch folder left behind


def test_the_report_of_an_encoder_run_shows_base_iterations_and_confusions(tmp_path):
    from loraforge.report import build_report

    run = tmp_path / "run"
    (run / "iteration_1").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"task": "encoder-labels", "config": {"labels": "nli.jsonl"}}))
    (run / "base_metrics.json").write_text(json.dumps({"accuracy": 0.25, "macro_f1": 0.2, "train_accuracy": 0.5}))
    heldout = [{"text": "p", "pair": "h", "label": gold} for gold in ("supports", "refutes", "refutes", "neutral")]
    (run / "split.json").write_text(json.dumps({"train": [], "heldout": heldout}))
    metrics = {"accuracy": 0.5, "macro_f1": 0.4, "train_accuracy": 0.9, "settings": {"epochs": 20, "dropout": 0.1}}
    metrics["predicted"] = ["supports", "refutes", "neutral", "supports"]
    (run / "iteration_1" / "metrics.json").write_text(json.dumps(metrics))
    (run / "history.jsonl").write_text(json.dumps({"iteration": 1, "promoted": True, "reason": "beats base"}) + "\n")
    (run / "ACTIVE").write_text("iteration_1\n")
    text = build_report(run)["markdown"].read_text()
    assert "encoder classifier" in text and "tool calling" not in text and "exact_match" not in text
    assert "| base (frozen encoder, trained head) | 0.250 | 0.200 | 0.500 |" in text
    assert "| iteration 1 (epochs 20, dropout 0.1) | 0.500 | 0.400 | 0.900 |" in text
    # gold refutes: once refutes, once neutral; gold neutral: once supports
    assert "| refutes | 1 | 1 | 0 |" in text and "| neutral | 0 | 0 | 1 |" in text
    assert "beats base" in text
