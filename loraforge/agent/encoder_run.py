"""`loraforge run --model-kind encoder`: an encoder classifier adapter from labeled rows (a file, or the
feedback database's snapshot), kept only when it beats the base on held-out rows.

There is no teacher here: the rows are the users' own corrections (seed 002). The loop is:

1. split the rows once (or take --eval-data as the held-out rows), saved in the run folder;
2. measure the base: the frozen encoder with only a classification head trained on the same rows (the
   base has no head of its own, so an untrained one would be chance, not a fair base);
3. per iteration, train a LoRA (head included), score it on the held-out rows, and promote it to
   final_adapter/ when its accuracy (then macro-F1) beats the base and every earlier iteration;
4. adjust for the next iteration from what the last one showed: more epochs when it did not fit its own
   training rows, more dropout and another seed when it fit them but not the held-out rows.

Every iteration's result is written atomically before the next starts, so a resumed run skips them.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loraforge.agent import triggers
from loraforge.agent.registry import hold, promote, record_history
from loraforge.agent.state import claim_run_folder
from loraforge.constants import Artifact
from loraforge.encoders import adapters
from loraforge.encoders.config import EncoderConfig
from loraforge.encoders.data import LabeledText, check_split, load_labeled_texts, split_labeled
from loraforge.encoders.evaluate import classifier_scores
from loraforge.encoders.model import resolve_encoder
from loraforge.encoders.train import OnStep, train_classifier
from loraforge.errors import ConfigError
from loraforge.files import atomic_write_json, read_json, read_jsonl

if TYPE_CHECKING:
    from loraforge.agent.config import RunConfig
    from loraforge.ui import UI

SPLIT = "split.json"
BASE = "base_metrics.json"


def rank(metrics: dict[str, Any]) -> tuple[float, float]:
    return metrics["accuracy"], metrics["macro_f1"]


def next_settings(config: EncoderConfig, last: dict[str, Any]) -> tuple[EncoderConfig, str]:
    """The next iteration's settings from the last one's train and held-out accuracy, and why."""
    if last["train_accuracy"] < 0.95:
        epochs = min(config.epochs * 2, 64)
        return replace(config, epochs=epochs), f"fit {last['train_accuracy']:.2f} of its training rows: epochs {epochs}"
    dropout = min(round(config.dropout + 0.1, 2), 0.5)
    return (
        replace(config, dropout=dropout, seed=config.seed + 1),
        f"fit its training rows but {last['accuracy']:.2f} held out: dropout {dropout}, seed {config.seed + 1}",
    )


def _split(config: RunConfig, run_dir: Path) -> tuple[list[LabeledText], list[LabeledText]]:
    """The run's (train, held-out) rows: saved on the first call, read back on a resumed run."""
    path = run_dir / SPLIT
    if path.is_file():
        saved = read_json(path)
        return [LabeledText(**r) for r in saved["train"]], [LabeledText(**r) for r in saved["heldout"]]
    assert config.labels is not None
    rows = load_labeled_texts(config.labels)
    if config.eval_data is not None:
        train, heldout = rows, load_labeled_texts(config.eval_data)
        unknown = sorted({r.label for r in heldout} - {r.label for r in rows})
        if unknown:
            raise ConfigError(f"{config.eval_data} has labels that no training row has: {unknown}.")
    else:
        train, heldout = split_labeled(rows, config.heldout_fraction, config.seed)
    check_split(train, heldout, config.labels)
    atomic_write_json(path, {"train": [asdict(r) for r in train], "heldout": [asdict(r) for r in heldout]})
    return train, heldout


def _trigger(config: RunConfig) -> triggers.TriggerResult:
    """--min-samples / --min-error-rate on the rows; the error rate comes from the rows' own record of what
    the model answered (original_label), as an encoder without an adapter has no answers of its own."""
    assert config.labels is not None
    raw = read_jsonl(config.labels)
    rows = [
        {"label": r.get("correct_label", r.get("label")), "predicted": r.get("predicted", r.get("original_label"))}
        for r in raw
    ]
    rate = triggers.recorded_error_rate([r for r in rows if r["predicted"] is not None])
    if config.min_error_rate is not None and rate is None:
        raise ConfigError(
            "min_error_rate needs the model's own answers: no row has original_label (or predicted).",
            fix="Record original_label with each correction, or drop --min-error-rate.",
        )
    return triggers.check(len(raw), rate, config.min_samples, config.min_error_rate)


def _scores(trained: Any, train: list[LabeledText], heldout: list[LabeledText], max_length: int) -> dict[str, Any]:
    held = classifier_scores(trained.model, trained.tokenizer, heldout, max_length)
    fit = classifier_scores(trained.model, trained.tokenizer, train, max_length)
    return {**held, "train_accuracy": fit["accuracy"], "seconds": round(trained.seconds, 1)}


def _brief(scores: dict[str, Any] | None) -> dict[str, float] | None:
    return None if scores is None else {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}


def run_encoder(config: RunConfig, ui: UI) -> dict[str, Any]:
    """The whole encoder run; returns the final summary (also in final.json), or {"skipped": why}."""
    if config.labels is None:
        raise ConfigError(
            "--model-kind encoder learns from labeled rows.", fix="Pass --labels FILE or --feedback-db DB."
        )
    run_dir = Path(config.out)
    model_dir = resolve_encoder(config.model)
    claim_run_folder(run_dir, {"task": "encoder-labels", "model": str(model_dir)}, "encoder-labels", config.to_dict())
    if config.min_samples is not None or config.min_error_rate is not None:
        result = _trigger(config)
        atomic_write_json(run_dir / Artifact.TRIGGER.value, result.__dict__)
        if not result.ready:
            return {"skipped": result.message}
        ui.info(result.message)
    train, heldout = _split(config, run_dir)
    labels = sorted({row.label for row in train})
    settings = config.encoder
    ui.info(f"{len(train)} training rows, {len(heldout)} held out; labels {', '.join(labels)}")

    def bar(name: str) -> OnStep:
        progress = ui.progress(None, name, "step")

        def tick(step: int, total: int, loss: float) -> None:
            progress.total = total
            progress.set_postfix(loss=f"{loss:.3f}")
            progress.update(step - progress.n)
            if step == total:
                progress.close()

        return tick

    if (run_dir / BASE).is_file():
        base = read_json(run_dir / BASE)
    else:
        probe = train_classifier(train, model_dir, settings, labels=labels, lora=False, on_step=bar("base head"))
        base = _scores(probe, train, heldout, settings.max_length)
        atomic_write_json(run_dir / BASE, base)
    ui.info(f"base (frozen encoder, trained head): accuracy {base['accuracy']:.3f}, macro-F1 {base['macro_f1']:.3f}")

    results: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for iteration in range(1, config.iterations + 1):
        it_dir = run_dir / f"iteration_{iteration}"
        metrics_path = it_dir / Artifact.METRICS.value
        if metrics_path.is_file():  # done before an interruption
            metrics = read_json(metrics_path)
        else:
            ui.info(
                f"[iteration {iteration}] training r={settings.r} epochs={settings.epochs} dropout={settings.dropout}"
            )
            trained = train_classifier(train, model_dir, settings, labels=labels, on_step=bar(f"iteration {iteration}"))
            metrics = {**_scores(trained, train, heldout, settings.max_length), "settings": asdict(settings)}
            # the comparison that `loraforge approve` shows: base, the best adapter before this one, and this one
            metrics |= {name: _brief(scores) for name, scores in (("base", base), ("best", best), ("adapter", metrics))}
            metrics["measured_on"] = f"{len(heldout)} held-out labeled rows"
            adapters.save(trained.model, it_dir, {"task": "sequence-classification", "labels": labels}, model_dir)
            atomic_write_json(metrics_path, metrics)
        promoted = rank(metrics) > rank(base) and (best is None or rank(metrics) > rank(best))
        against = f"base {base['accuracy']:.3f}" + (f", best so far {best['accuracy']:.3f}" if best else "")
        verdict = "beats " if promoted else "does not beat "
        reason = f"held-out accuracy {metrics['accuracy']:.3f} {verdict}{against}"
        if promoted:
            best = {**metrics, "iteration": iteration}
            if config.require_approval:
                hold(run_dir, it_dir)
            else:
                promote(run_dir, it_dir)
        record_history(
            run_dir,
            {
                "iteration": iteration,
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "promoted": promoted,
                "held": promoted and config.require_approval,
                "reason": reason,
            },
        )
        ui.info(
            f"[iteration {iteration}] accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
            f"(base {base['accuracy']:.3f}); " + ("promoted" if promoted else "not promoted")
        )
        results.append({"iteration": iteration, **{k: v for k, v in metrics.items() if k != "predicted"}})
        if metrics["accuracy"] >= 1.0:
            break
        settings, why = next_settings(EncoderConfig(**metrics["settings"]), metrics)
        ui.info(f"[iteration {iteration}] next: {why}")
    final = {
        "task": "encoder-labels",
        "base": {k: v for k, v in base.items() if k != "predicted"},
        "iterations": results,
        "best_iteration": best["iteration"] if best else None,
        "waits_for_approval": bool(best) and config.require_approval,
        "heldout_rows": len(heldout),
        "heldout_source": str(config.eval_data) if config.eval_data else "split",
    }
    atomic_write_json(run_dir / "final.json", final)
    return final
