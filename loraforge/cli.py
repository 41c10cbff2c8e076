"""The `loraforge` command line: check, init, run, generate, train, serve-encoder, export, eval, report,
rollback, approve, upload."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loraforge.agent.config import RunConfig
from loraforge.constants import ALL_METRICS, Artifact
from loraforge.errors import LoraforgeError, StopRequested
from loraforge.flags import add_config_flag, field_default, given
from loraforge.generators.plan import GenerationPlan
from loraforge.settings import build
from loraforge.trainers.config import TrainConfig


def _positive(kind: type, zero: bool = False) -> Callable[[str], Any]:
    """An argparse type: a number of `kind` above 0 (or at least 0 with `zero`), or a one-line usage error."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero else 'above 0'}, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _add_server_flags(parser: argparse.ArgumentParser) -> None:
    add_config_flag(parser, RunConfig, "model")
    add_config_flag(parser, RunConfig, "llama_server")
    add_config_flag(parser, RunConfig, "engine", default=field_default(RunConfig, "engine"))


# `loraforge run` flags that set a config field: (field path, flag; None for --the-field-name). Type,
# choices, default and help are the field's own (loraforge/flags.py), as `loraforge init` writes them.
RUN_CONFIG_FLAGS: list[tuple[str, str | None]] = [
    ("out", None),
    ("examples", None),
    ("iterations", None),
    ("warm_start", None),
    ("training.epochs", None),
    ("strategy.target", None),
    ("time_budget_minutes", "--time-budget"),
    ("heldout_fraction", None),
    ("seed", None),
    ("model", None),
    ("model_kind", None),
    ("teacher_model", None),
    ("llama_server", None),
    ("engine", None),
    ("training.device", None),
    ("training.processes", None),
    ("training.fsdp", None),
    ("judge", "--no-judge"),
    ("judge_model", None),
    ("eval_data", None),
    ("chat_template", None),
    ("require_approval", None),
    ("feedback_db", None),
    ("feedback_table", None),
    ("min_samples", None),
    ("min_error_rate", None),
]


# `loraforge train` flags (Mellea-compatible names) that set a TrainConfig field, as above.
TRAIN_CONFIG_FLAGS: list[tuple[str, str | None]] = [
    ("adapter", None),
    ("device", None),
    ("epochs", None),
    ("learning_rate", None),
    ("batch_size", None),
    ("max_length", None),
    ("grad_accum", None),
    ("r", "--rank"),
    ("alpha", None),
    ("dropout", None),
    ("gradient_checkpointing", None),
    ("fsdp", None),
    ("dtype", None),
    ("val_fraction", None),
    ("answer_share", None),
    ("seed", None),
]


# The encoder tasks of `loraforge train --task` (loraforge/encoders/).
ENCODER_TASKS = ("sequence-classification", "embedding")


# `loraforge generate` flags that set a GenerationPlan field.
GENERATE_PLAN_FLAGS = ("temperature", "top_p", "roundtrip", "topic_rate", "restate_dropped", "compose_rate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loraforge",
        description="Turn a base model and a task into a verified LoRA adapter for llama.cpp.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="check that this machine can run loraforge")
    _add_server_flags(check)
    check.add_argument("--out", type=Path, default=Path("runs"), help="output folder to test (default: runs)")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.add_argument("--deep", action="store_true", help="also start the server and run one completion")

    run = sub.add_parser(
        "run",
        help="generate data, train, export and evaluate in a loop, unattended",
        description="Flags override the --config file, which overrides the defaults (see `loraforge init`).",
    )
    task = run.add_mutually_exclusive_group()
    for path in ("tools", "labels"):
        add_config_flag(task, RunConfig, path)
    run.add_argument("--config", type=Path, help="YAML config file (write a starter with `loraforge init`)")
    for path, flag in RUN_CONFIG_FLAGS:
        add_config_flag(run, RunConfig, path, flag)
    add_config_flag(run, RunConfig, "server_urls", "--server-url", metavar="URL")
    add_config_flag(run, RunConfig, "judge_urls", "--judge-url", metavar="URL")
    add_config_flag(run, RunConfig, "server_model")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run where it stopped")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    init = sub.add_parser("init", help="write a starter config file with every setting and its default")
    init.add_argument("path", type=Path, nargs="?", default=Path("loraforge.yaml"), help="default: loraforge.yaml")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")

    rollback = sub.add_parser("rollback", help="make an earlier adapter of a run the active one")
    rollback.add_argument("run_dir", type=Path)
    rollback.add_argument("--to", help="iteration number, or 'base' (default: the previously promoted adapter)")

    approve = sub.add_parser("approve", help="serve the adapter that a --require-approval run holds back")
    approve.add_argument("run_dir", type=Path)
    approve.add_argument("--yes", action="store_true", help="approve without asking (after printing the comparison)")

    train = sub.add_parser("train", help="train a LoRA or aLoRA adapter on a data file (Mellea-compatible flags)")
    train.add_argument("datafile", type=Path, help="JSONL: chat rows, {item,label}, {instruction,input,output}")
    train.add_argument("--basemodel", type=Path, help="GGUF file or Hugging Face folder (default: embedded model)")
    train.add_argument("--outfile", type=Path, required=True, help="folder for the adapter")
    train.add_argument(
        "--task",
        choices=["causal-lm", *ENCODER_TASKS],
        default="causal-lm",
        help="causal-lm (a chat model, exported to GGUF; the default), or an encoder adapter on --basemodel "
        "(default minilm-l6): sequence-classification ({item,label} or {premise,hypothesis,label}; the head "
        "is saved in the adapter) or embedding ({query,positive[,negative]}; contrastive)",
    )
    for path, flag in TRAIN_CONFIG_FLAGS:
        add_config_flag(train, TrainConfig, path, flag)
    train.add_argument("--promptfile", type=Path, help='JSON {"invocation_prompt": ...} for --adapter alora')
    for path in ("use_dora", "use_rslora"):  # refused with a reason (not expressible in GGUF); not advertised
        add_config_flag(train, TrainConfig, path, help=argparse.SUPPRESS)
    train.add_argument(
        "--checkpoint-every",
        type=_positive(float, zero=True),
        default=60.0,
        help="seconds between checkpoints (0: every step)",
    )
    add_config_flag(train, RunConfig, "chat_template")
    train.add_argument("--no-export", action="store_true", help="skip the GGUF export")
    train.add_argument("--quiet", action="store_true")

    serve = sub.add_parser(
        "serve-encoder",
        help="serve an encoder adapter (classifier or embeddings) over HTTP, with a hot-load endpoint",
        description='POST /nli/adapter/load {"adapter_path": ...} swaps adapters without a restart; '
        'POST /nli/predict {"premise", "hypothesis"} or {"text"}; POST /embed {"texts": [...]}.',
    )
    serve.add_argument("--adapter", type=Path, help="adapter folder to load at start (a classifier needs one)")
    serve.add_argument("--task", choices=ENCODER_TASKS, help="default: the adapter's task, else embedding")
    serve.add_argument("--basemodel", type=Path, help="Hugging Face folder or minilm-l6 (default)")
    serve.add_argument(
        "--adapters-root", type=Path, default=Path("."), help="adapters may be loaded only from under it (default: .)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    serve.add_argument("--port", type=_positive(int), default=8001)

    export = sub.add_parser("export", help="PEFT adapter -> GGUF adapter, proven against PEFT, with a serving bundle")
    export.add_argument("adapter_dir", type=Path)
    export.add_argument("--base", type=Path, help="base GGUF (default: the one the adapter was trained on)")
    export.add_argument("--outtype", choices=["f32", "f16", "q8_0"], default="f32")
    export.add_argument("--prompts", type=_positive(int), default=20, help="held-out prompts for the fidelity check")
    export.add_argument("--no-check", action="store_true", help="skip the fidelity check")
    export.add_argument(
        "--chat-template",
        type=Path,
        metavar="FILE",
        help="chat template to serve an adapter with that has none (one trained outside loraforge)",
    )

    ev = sub.add_parser("eval", help="evaluate the base or an adapter through llama.cpp on your own held-out file")
    ev.add_argument("--data", type=Path, required=True, help="JSONL rows: tool calling or {id, item, label}")
    ev.add_argument("--adapter", type=Path, help="adapter folder or .gguf (default: evaluate the base model)")
    ev.add_argument("--tools", type=Path, help="tools file for rows without their own 'tools'")
    ev.add_argument("--labels", type=Path, help="labeled JSONL whose labels form the label set")
    ev.add_argument("--model", type=Path, help="base GGUF (default: the adapter's base, else the embedded model)")
    ev.add_argument("--out", type=Path, default=Path("eval"), help="output folder (default: eval)")
    ev.add_argument("--max-tokens", type=_positive(int), default=256)
    ev.add_argument(
        "--chat-template", type=Path, metavar="FILE", help="chat template to prompt with (default: the adapter's)"
    )
    add_config_flag(ev, RunConfig, "engine", default=field_default(RunConfig, "engine"))
    ev.add_argument("--quiet", action="store_true")

    gen = sub.add_parser("generate", help="generate verified synthetic data only")
    task = gen.add_mutually_exclusive_group(required=True)
    task.add_argument("--tools", type=Path, help="tools file: tool-calling chats (OpenAI/TRL chat JSONL)")
    task.add_argument("--labels", type=Path, help="labeled seeds JSONL: new {item, label} rows")
    gen.add_argument("--n", type=_positive(int), required=True, help="verified examples to produce")
    gen.add_argument("--out", type=Path, required=True, help="output JSONL (appended to; a rerun resumes)")
    # generate takes no config file: these flags default to the run config's own defaults
    add_config_flag(gen, RunConfig, "seed", default=field_default(RunConfig, "seed"))
    add_config_flag(gen, RunConfig, "parallel", type=_positive(int), default=field_default(RunConfig, "parallel"))
    for path in GENERATE_PLAN_FLAGS:
        add_config_flag(gen, GenerationPlan, path)
    add_config_flag(gen, RunConfig, "server_urls", "--server-url", metavar="URL")
    add_config_flag(gen, RunConfig, "server_model")
    gen.add_argument("--quiet", action="store_true")
    _add_server_flags(gen)

    report = sub.add_parser("report", help="write report.html and report.md for a run folder")
    report.add_argument("run_dir", type=Path, help="a run folder, e.g. runs/demo")
    report.add_argument("--out", type=Path, help="where to write the report (default: the run folder)")

    upload = sub.add_parser("upload", help="publish an adapter to the Hugging Face Hub (token: HF_TOKEN)")
    upload.add_argument("adapter_dir", type=Path, help="an exported adapter folder, e.g. runs/demo/final_adapter")
    upload.add_argument("--repo-id", help="the Hub repository, user/name (created if needed)")
    upload.add_argument("--private", action="store_true", help="create the repository as private")
    upload.add_argument("--base-model-id", help="the base model's Hub ID (default: known for the default model)")
    upload.add_argument("--dry-run", type=Path, metavar="DIR", help="write the folder that would be uploaded, only")
    upload.add_argument("--yes", action="store_true", help="upload without asking (after printing what goes)")
    upload.add_argument(
        "--intrinsic", action="store_true", help="publish as a Mellea intrinsic (loadable by repository ID)"
    )
    upload.add_argument("--io-yaml", type=Path, metavar="FILE", help="the intrinsic's io.yaml (with --intrinsic)")
    return parser


def cmd_check(args: argparse.Namespace) -> int:
    from loraforge.preflight.checks import run_checks

    def show(result) -> None:
        if not args.json:
            line = f"[{result.status:>4}] {result.name}: {result.detail}"
            if result.fix and result.status != "ok":
                line += f"\n       fix: {result.fix}"
            print(line, flush=True)

    results = run_checks(args.model, args.out, args.llama_server, args.deep, on_result=show, engine=args.engine)
    failed = [r for r in results if r.status == "fail"]
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        warned = sum(r.status == "warn" for r in results)
        print(f"\n{len(results)} checks: {len(failed)} failed, {warned} warnings.")
    return 1 if failed else 0


def run_overrides(args: argparse.Namespace) -> dict:
    """The settings given as flags, in the config file's shape."""
    paths = ["tools", "labels", "server_urls", "judge_urls", "server_model"] + [path for path, _ in RUN_CONFIG_FLAGS]
    return given(args, paths)


def cmd_run(args: argparse.Namespace) -> int:
    from loraforge.agent import feedback
    from loraforge.agent.config import load_config, merge
    from loraforge.agent.orchestrator import Orchestrator
    from loraforge.errors import ConfigError
    from loraforge.files import read_json
    from loraforge.ui import UI

    overrides = run_overrides(args)
    if args.resume:
        saved = args.resume / Artifact.RUN_CONFIG.value
        if not saved.is_file():
            raise ConfigError(f"{args.resume} holds no run to resume (no config.json).", fix="Check the folder name.")
        record = read_json(saved)
        if not (isinstance(record, dict) and isinstance(record.get("config"), dict)):
            raise ConfigError(
                f"{saved} is not a loraforge run record (it has no 'config' mapping).",
                fix="Resume a folder that `loraforge run` wrote, or start a new run with another --out.",
            )
        values = merge(record["config"], {**overrides, "out": str(args.resume)})
        config = build(RunConfig, values, "config")
    elif args.config:
        config = load_config(args.config, overrides)
    else:
        config = build(RunConfig, overrides, "config")
    ui = UI(quiet=args.quiet)
    config = feedback.prepare(config)  # a feedback run's snapshot of the database, before anything else
    if config.model_kind == "encoder":
        return run_encoder_command(config, ui)
    orchestrator = Orchestrator(config, ui)
    ui.info(f"loraforge run -> {config.out} (model {orchestrator.model.name}, {orchestrator.task.describe()})")
    try:
        final = asyncio.run(orchestrator.run())
    except StopRequested:
        print(
            f"\nloraforge: stopped; state saved. Continue with `loraforge run --resume {config.out}`.",
            file=sys.stderr,
        )
        return 130
    done = feedback.finish(config, final)
    if "skipped" in final:
        print(f"Not training: {final['skipped']}")
        return 0
    print_summary(config.out, final, orchestrator.state, ui)
    if done:
        print(done)
    return 0


def run_encoder_command(config: RunConfig, ui: Any) -> int:
    """`loraforge run --model-kind encoder`: the encoder loop, then its table (agent/encoder_run.py)."""
    from loraforge.agent import feedback
    from loraforge.agent.encoder_run import run_encoder

    ui.info(f"loraforge run -> {config.out} (encoder {config.model or 'minilm-l6'}, labels {config.labels})")
    final = run_encoder(config, ui)
    done = feedback.finish(config, final)
    if "skipped" in final:
        print(f"Not training: {final['skipped']}")
        return 0
    base = final["base"]
    print(f"\n{'':<22}{'accuracy':>10}{'macro-F1':>10}")
    print(f"{'base (head only)':<22}{base['accuracy']:>10.3f}{base['macro_f1']:>10.3f}")
    for row in final["iterations"]:
        mark = " *" if row["iteration"] == final["best_iteration"] else ""
        print(f"{'iteration ' + str(row['iteration']) + mark:<22}{row['accuracy']:>10.3f}{row['macro_f1']:>10.3f}")
    print(f"held-out rows: {final['heldout_rows']} ({final['heldout_source']})")
    if final["best_iteration"] is None:
        print("No adapter beat the base; nothing promoted.")
    elif final.get("waits_for_approval"):
        print(f"Best adapter (iteration_{final['best_iteration']}) waits for approval: loraforge approve {config.out}")
    else:
        print(
            f"Best adapter: {config.out / Artifact.FINAL_ADAPTER.value} "
            f"(serve it: loraforge serve-encoder --adapter {config.out / Artifact.FINAL_ADAPTER.value})"
        )
    if done:
        print(done)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from loraforge.agent.config import starter_yaml
    from loraforge.files import atomic_write_text

    if args.path.is_dir():
        raise LoraforgeError(
            f"{args.path} is a folder.", fix=f"Name the config file, e.g. {args.path / 'loraforge.yaml'}."
        )
    if args.path.exists() and not args.force:
        raise LoraforgeError(f"{args.path} already exists.", fix="Pass --force to overwrite it, or another path.")
    atomic_write_text(args.path, starter_yaml())
    print(f"wrote {args.path}; edit it, then: loraforge run --config {args.path}")
    requests = args.path.with_name("eval-requests.jsonl")
    if requests.exists():  # even with --force: it holds the user's real requests once filled in
        print(f"kept {requests}")
    else:
        atomic_write_text(requests, EVAL_TEMPLATE)
        print(
            f"wrote {requests}: replace its rows with 20 or more requests your users really wrote (one JSON "
            "object per line, as shown), then set eval_data to it or pass --eval-data. They decide which "
            "adapter is promoted and are never trained on."
        )
    return 0


# `loraforge init`'s template of real requests, for the example tools: a call, a call with an optional value,
# two calls in one request, and a request that no tool serves.
EVAL_TEMPLATE = "".join(
    json.dumps(row) + "\n"
    for row in [
        {
            "id": "example-1",
            "messages": [{"role": "user", "content": "is it raining in lisbon right now?"}],
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Lisbon"}}],
        },
        {
            "id": "example-2",
            "messages": [{"role": "user", "content": "timer for 20 min, call it pizza"}],
            "tool_calls": [{"name": "set_timer", "arguments": {"minutes": 20, "label": "pizza"}}],
        },
        {
            "id": "example-3",
            "messages": [{"role": "user", "content": "weather in Oslo in celsius, and a 5 minute timer"}],
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}},
                {"name": "set_timer", "arguments": {"minutes": 5}, "acceptable": {"label": [""]}},
            ],
        },
        {"id": "example-4", "messages": [{"role": "user", "content": "thank you!"}], "tool_calls": []},
    ]
)


def cmd_rollback(args: argparse.Namespace) -> int:
    from loraforge.agent.registry import rollback

    target = rollback(args.run_dir, args.to)
    where = "the base model (no adapter)" if target == "base" else f"{target} (copied to final_adapter/)"
    print(f"active adapter of {args.run_dir}: {where}")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from loraforge.agent.registry import active, approve, pending
    from loraforge.files import read_json_object

    name = pending(args.run_dir)
    if name is None:
        raise LoraforgeError(f"No adapter of {args.run_dir} waits for approval.")
    current = active(args.run_dir)
    print(f"{name} waits for approval; now served: {current or 'the base model (nothing promoted yet)'}.")
    metrics = read_json_object(args.run_dir / name / Artifact.METRICS.value)
    scores = metrics.get("real") or metrics
    for key in ALL_METRICS:
        values = [(label, (scores.get(label) or {}).get(key)) for label in ("base", "best", "adapter")]
        shown = ", ".join(f"{label} {value:.3f}" for label, value in values if isinstance(value, (int, float)))
        if shown:
            print(f"  {key}: {shown}")
    where = f"{metrics['real']['rows']} real requests" if metrics.get("real") else "the synthetic held-out set"
    where = metrics.get("measured_on") or where  # an encoder run's held-out rows are the user's own
    print(f"  (measured on {where}; 'best' is the best adapter before it)")
    if not args.yes:
        if not sys.stdin.isatty():
            raise LoraforgeError("approve asks before it changes the served adapter.", fix="Pass --yes.")
        if input(f"Serve {name}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Nothing changed.")
            return 1
    approve(args.run_dir)
    print(f"active adapter of {args.run_dir}: {name} (copied to final_adapter/)")
    return 0


# What `train` writes into its --outfile folder (PEFT's save_pretrained writes README.md too).
ENCODER_OUTPUTS = (
    Artifact.ADAPTER_WEIGHTS.value,
    Artifact.ADAPTER_CONFIG.value,
    Artifact.ADAPTER_META.value,
    Artifact.METRICS.value,
    Artifact.MODEL_CARD.value,
)

TRAIN_OUTPUTS = [
    Artifact.ADAPTER_WEIGHTS.value,
    Artifact.ADAPTER_CONFIG.value,
    Artifact.ADAPTER_GGUF.value,
    Artifact.CHAT_TEMPLATE.value,
    Artifact.ADAPTER_META.value,
    Artifact.TRAIN_RESULT.value,
    Artifact.TRAIN_LOG.value,
    Artifact.CHECKPOINT.value,
    Artifact.MODEL_CARD.value,
    Artifact.SERVE_SCRIPT.value,
    Artifact.MODELFILE.value,
]


def cmd_train_encoder(args: argparse.Namespace) -> int:
    """`loraforge train --task sequence-classification|embedding`: an encoder adapter, scored against the base
    on a held-out share of the rows (--val-fraction, default 0.2)."""
    from loraforge.encoders import adapters
    from loraforge.encoders.config import EncoderConfig
    from loraforge.encoders.data import check_split, load_labeled_texts, load_pairs, split_labeled, split_pairs
    from loraforge.encoders.evaluate import classifier_scores, corpus_of, retrieval_scores
    from loraforge.encoders.model import load_embedder, load_tokenizer, resolve_encoder
    from loraforge.encoders.train import train_classifier, train_embedder
    from loraforge.files import atomic_write_json, claim_output_folder
    from loraforge.ui import UI

    ui = UI(quiet=args.quiet)
    flags = {"r": "r", "alpha": "alpha", "dropout": "dropout", "epochs": "epochs", "learning_rate": "learning_rate"}
    flags.update(batch_size="batch_size", max_length="max_length", seed="seed")
    settings = {flags[k]: v for k, v in given(args, list(flags)).items()}
    chat_only = [*given(args, ["adapter", "device", "grad_accum", "gradient_checkpointing", "dtype", "answer_share"])]
    chat_only += [name for name in ("promptfile", "chat_template", "no_export") if getattr(args, name)]
    if chat_only:
        flags_given = ", ".join("--" + name.replace("_", "-") for name in chat_only)
        raise LoraforgeError(
            f"{flags_given} {'applies' if len(chat_only) == 1 else 'apply'} to chat models, not to --task {args.task}.",
            fix="Leave them out for an encoder.",
        )
    config = build(EncoderConfig, {**settings, "task": args.task}, "train")
    fraction = args.val_fraction if args.val_fraction is not None else 0.2
    if not 0 < fraction <= 0.5:
        raise LoraforgeError(
            f"--val-fraction {fraction}: an encoder adapter is scored against its base on held-out rows.",
            fix="Hold out between 0.05 and 0.5 (default 0.2).",
        )
    model_dir = resolve_encoder(args.basemodel)

    def tick(step: int, total: int, loss: float) -> None:
        bar.total = total
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.update(step - bar.n)

    if config.task == "sequence-classification":
        rows = load_labeled_texts(args.datafile)
        train, heldout = split_labeled(rows, fraction, config.seed)
        check_split(train, heldout, args.datafile)
        # Once the rows are known good: a bad file leaves neither an output folder nor an empty progress bar.
        claim_output_folder(args.outfile, "--outfile", [*ENCODER_OUTPUTS], owned_by=[Artifact.ADAPTER_META.value])
        labels = sorted({row.label for row in rows})
        bar = ui.progress(None, "train", "step")
        try:
            trained = train_classifier(train, model_dir, config, labels=labels, on_step=tick)
        finally:
            bar.close()
        probe = train_classifier(train, model_dir, config, labels=labels, lora=False)
        scores = {
            "adapter": classifier_scores(trained.model, trained.tokenizer, heldout, config.max_length),
            "base (frozen, head trained)": classifier_scores(probe.model, probe.tokenizer, heldout, config.max_length),
        }
        names: tuple[str, ...] = ("accuracy", "macro_f1")
        meta: dict[str, Any] = {"task": config.task, "labels": labels}
    else:
        pairs = load_pairs(args.datafile)
        train_pairs, held_pairs = split_pairs(pairs, fraction, config.seed)
        check_split(train_pairs, held_pairs, args.datafile)
        claim_output_folder(args.outfile, "--outfile", [*ENCODER_OUTPUTS], owned_by=[Artifact.ADAPTER_META.value])
        documents, _ = corpus_of(pairs)
        bar = ui.progress(None, "train", "step")
        try:
            trained = train_embedder(train_pairs, model_dir, config, on_step=tick)
        finally:
            bar.close()
        base = load_embedder(model_dir)
        scores = {
            "adapter": retrieval_scores(trained.model, trained.tokenizer, held_pairs, documents, config.max_length),
            "base": retrieval_scores(base, load_tokenizer(model_dir), held_pairs, documents, config.max_length),
        }
        names = ("recall@1", "recall@5", "recall@10")
        meta = {"task": config.task}
    adapters.save(trained.model, args.outfile, {**meta, "settings": config.__dict__}, model_dir)
    clean = {side: {k: v for k, v in values.items() if k != "predicted"} for side, values in scores.items()}
    atomic_write_json(args.outfile / Artifact.METRICS.value, {"heldout": clean, "train_seconds": trained.seconds})
    print(f"trained {len(trained.losses)} steps in {trained.seconds:.0f} s; final loss {trained.losses[-1]:.4f}")
    held = next(iter(clean.values()))
    print(f"held-out ({held.get('rows', held.get('queries'))} rows):")
    for side, values in clean.items():
        print(f"  {side:<28}" + "  ".join(f"{name} {values[name]:.3f}" for name in names))
    print(f"adapter: {args.outfile} (serve it: loraforge serve-encoder --adapter {args.outfile} --task {config.task})")
    return 0


def cmd_serve_encoder(args: argparse.Namespace) -> int:
    from loraforge.encoders.model import resolve_encoder
    from loraforge.encoders.server import EncoderServer, serve
    from loraforge.files import read_json_object

    task = args.task
    if task is None:
        meta = read_json_object(args.adapter / Artifact.ADAPTER_META.value) if args.adapter else {}
        task = meta.get("task", "embedding")
    if task not in ENCODER_TASKS:
        raise LoraforgeError(
            f"{args.adapter} is a {task} adapter, not an encoder's.", fix="Serve it with llama-server."
        )
    if task == "sequence-classification" and args.adapter is None:
        raise LoraforgeError("A classifier's head is in its adapter.", fix="Pass --adapter DIR.")
    server = EncoderServer(resolve_encoder(args.basemodel), task, args.adapters_root)
    if args.adapter is not None:
        server.served = server.load_adapter(str(args.adapter), over_http=False)
    print(f"serving {task} on http://{args.host}:{args.port} (adapter: {server.served.adapter or 'none'})")
    serve(server, args.host, args.port)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.task in ENCODER_TASKS:
        return cmd_train_encoder(args)
    from loraforge.chat.format import load_template_file
    from loraforge.files import claim_output_folder, read_json
    from loraforge.models import resolve_model
    from loraforge.trainers.data import load_training_rows
    from loraforge.trainers.job import run_training
    from loraforge.ui import UI

    lead = int(os.environ.get("RANK", "0")) == 0  # under torchrun, the first process reports and exports
    ui = UI(quiet=args.quiet or not lead)
    if args.outfile.exists() and not args.outfile.is_dir():
        raise LoraforgeError(
            f"--outfile {args.outfile} is a file; train writes a folder (the PEFT adapter and adapter.gguf).",
            fix="Pass a folder name.",
        )
    invocation = None
    if args.promptfile:
        prompt = read_json(args.promptfile)
        if not isinstance(prompt, dict) or not isinstance(prompt.get("invocation_prompt"), str):
            raise LoraforgeError(f'{args.promptfile} must hold {{"invocation_prompt": "..."}}.')
        invocation = prompt["invocation_prompt"]
    settings = given(args, [path for path, _ in TRAIN_CONFIG_FLAGS] + ["use_dora", "use_rslora"])
    config = build(TrainConfig, {**settings, "invocation_prompt": invocation}, "train")
    rows = load_training_rows(args.datafile)
    base = args.basemodel if args.basemodel and args.basemodel.is_dir() else resolve_model(args.basemodel)
    template = load_template_file(args.chat_template) if args.chat_template else None
    claim_output_folder(args.outfile, "--outfile", TRAIN_OUTPUTS, owned_by=[Artifact.ADAPTER_META.value])
    bar = ui.progress(None, "train", "step")

    def tick(step: int, total: int, record: dict) -> None:
        bar.total = total
        bar.set_postfix(loss=f"{record['loss']:.3f}")
        bar.update(step - bar.n)

    try:
        labels = sorted({row["label"] for row in rows if "label" in row})
        result = run_training(
            rows,
            base,
            config,
            args.outfile,
            progress=ui.info,
            on_step=tick,
            checkpoint_every=args.checkpoint_every,
            extra_meta={"task": "labels", "labels": labels} if labels else {"task": "chat"},
            chat_template=template,
        )
    finally:
        bar.close()
    if not lead:
        return 0
    if result.resumed_from_step:
        print(f"resumed from step {result.resumed_from_step}")
    if result.dropped_checkpoint:
        print(
            f"the checkpoint in {args.outfile} was for other settings ({result.dropped_checkpoint});"
            " trained from step 0"
        )
    print(
        f"trained {result.steps} steps in {result.seconds:.0f} s; final loss {result.final_train_loss:.4f}"
        + (f", best validation loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else "")
    )
    if not args.no_export and Path(base).is_file():
        from loraforge.export.proven import export_proven

        # The same export as `loraforge export`, without the proof through llama.cpp, which takes a server.
        outcome = export_proven(args.outfile, Path(base), check=False)
        for warning in outcome.warnings:
            print(f"loraforge: warning: {warning}", file=sys.stderr)
        print(f"GGUF adapter: {outcome.gguf} (prove it against PEFT with: loraforge export {args.outfile})")
    print(f"adapter: {args.outfile}")
    return 0


def _adapter_base(adapter_dir: Path, given: Path | None) -> Path:
    from loraforge.models import resolve_model

    if given is not None:
        return resolve_model(given)
    from loraforge.files import read_json_object

    recorded = read_json_object(adapter_dir / Artifact.ADAPTER_META.value).get("base_model")
    if isinstance(recorded, str) and recorded and Path(recorded).is_file():
        return resolve_model(recorded)
    return resolve_model(None)


def adopt_template(folder: Path, path: Path) -> None:
    """Give an adapter that has no chat template (one trained outside loraforge) the user's; an adapter
    trained with another template keeps its own, since serving it otherwise would not match its training."""
    from loraforge.chat.format import load_template_file
    from loraforge.files import atomic_write_text

    text = load_template_file(path)
    own = folder / Artifact.CHAT_TEMPLATE.value
    if own.is_file() and own.read_text(encoding="utf-8") != text:
        raise LoraforgeError(
            f"{folder} was trained with its own {own.name}, which differs from --chat-template {path}.",
            fix="Drop --chat-template: the adapter is exported and served with the template it was trained with.",
        )
    atomic_write_text(own, text)


def cmd_export(args: argparse.Namespace) -> int:
    from loraforge.errors import ConfigError
    from loraforge.evaluators.fidelity import NOISE_FACTOR
    from loraforge.export.proven import REPORT, export_proven
    from loraforge.files import claim_output_folder, mark_output_folder

    folder = args.adapter_dir
    if not Path(folder).is_dir():
        raise ConfigError(f"{folder}: no such adapter folder.", fix="Pass the folder that `loraforge train` wrote.")
    # A PEFT folder from elsewhere may hold an adapter.gguf of its own: never overwrite it.
    outputs = [Artifact.ADAPTER_GGUF.value, REPORT]
    claim_output_folder(folder, "export", outputs, owned_by=[Artifact.ADAPTER_META.value], mark=False)
    base = _adapter_base(folder, args.base)
    if args.chat_template:
        adopt_template(folder, args.chat_template)
    outcome = export_proven(folder, base, outtype=args.outtype, prompts=args.prompts, check=not args.no_check)
    mark_output_folder(folder)  # its adapter.gguf is now loraforge's: a later export may overwrite it
    for warning in outcome.warnings:
        print(f"loraforge: warning: {warning}", file=sys.stderr)
    summary, report = outcome.summary, outcome.report
    print(
        f"wrote {outcome.gguf} ({summary.tensors} tensors, rank {summary.rank}, alpha {summary.alpha:g}, "
        f"{args.outtype})"
    )
    if report is not None:
        print(
            f"fidelity: top-1 agreement {report['top1_agreement']:.4f} over {report['positions']} positions "
            f"({report['top1_agreement_near_ties']:.4f} counting {len(report['near_ties'])} near ties), "
            f"greedy match {report['greedy_match']:.2f} on {report['prompts']} prompts; log-probability error "
            f"{report['logprob_error']:.3f} (limit {report['logprob_error_limit']:.3f}, {NOISE_FACTOR:g}x the "
            f"base model's own {report['base_logprob_error']:.3f})"
        )
        if not report["passed"]:
            print(
                f"loraforge: error: the GGUF adapter does not reproduce the PEFT adapter: top-1 agreement "
                f"counting near ties {report['top1_agreement_near_ties']:.4f} (needs {report['threshold']}), "
                f"log-probability error {report['logprob_error']:.3f} (limit {report['logprob_error_limit']:.3f})."
                f" Check that the base model is the one the adapter was trained on; details in "
                f"{folder / REPORT}.",
                file=sys.stderr,
            )
            return 1
    for path in outcome.bundle:
        print(f"wrote {path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from loraforge.chat.format import load_template_file
    from loraforge.evaluators.eval_cmd import run_eval
    from loraforge.ui import UI

    metrics = run_eval(
        args.data,
        adapter=args.adapter,
        tools_file=args.tools,
        labels_file=args.labels,
        model=args.model,
        out=args.out,
        max_tokens=args.max_tokens,
        ui=UI(quiet=args.quiet),
        chat_template=load_template_file(args.chat_template) if args.chat_template else None,
        engine=args.engine,
    )
    table = metrics_table(metrics)
    if table:
        print(table)
    print(f"predictions and metrics in {args.out}")
    return 0


def metrics_table(metrics: dict) -> str | None:
    """The scores of each model that was evaluated (base alone when there is no adapter), as a table."""
    from loraforge.ui import format_table

    models = [m for m in ("base", "adapter") if isinstance(metrics.get(m), dict)]
    keys = [k for k in ALL_METRICS if any(metrics[m].get(k) is not None for m in models)]
    if not keys:
        return None
    return format_table(["metric"] + models, [[k] + [metrics[m].get(k) for m in models] for k in keys])


def cmd_generate(args: argparse.Namespace) -> int:
    from loraforge.agent.tasks import LabelTask, ToolTask
    from loraforge.generators.runner import generate_to_file, load_partial, report_path
    from loraforge.generators.stats import coverage_message
    from loraforge.models import resolve_model
    from loraforge.runtime.teacher import teacher
    from loraforge.ui import UI

    ui = UI(quiet=args.quiet)
    plan = build(GenerationPlan, given(args, list(GENERATE_PLAN_FLAGS)), "generate")
    task = ToolTask.from_file(args.tools) if args.tools else LabelTask.from_file(args.labels)
    from loraforge.agent.config import check_server_url

    for url in args.server_urls or []:
        check_server_url(url)
    model = resolve_model(args.model) if not args.server_urls else None
    if args.out.is_dir():
        raise LoraforgeError(f"--out {args.out} is a folder.", fix="Pass a file name such as data.jsonl.")
    load_partial(args.out)  # before the server starts: refuses a file loraforge did not write

    async def work() -> dict:
        async with teacher(
            model=model,
            server_urls=args.server_urls,
            llama_server=args.llama_server,
            parallel=args.parallel,
            on_info=ui.info,
            server_model=args.server_model,
            engine=args.engine,
        ) as client:
            generator = task.generator(client, plan, args.seed)
            bar = ui.progress(args.n, "generate", "ex")
            try:
                return await generate_to_file(
                    generator, args.out, args.n, on_row=lambda _row: bar.update(1), on_warning=ui.warn
                )
            finally:
                bar.close()

    report = asyncio.run(work())
    counts = report["per_label"] if args.labels else report["per_style"]
    print(
        f"{report['kept_in_file']} verified examples in {args.out} ({', '.join(f'{k} {v}' for k, v in counts.items())})"
    )
    if report["rejected"]:
        print("rejected: " + ", ".join(f"{k} {v}" for k, v in report["rejected"].items()))
    if report.get("examples_per_minute"):
        print(f"{report['examples_per_minute']} verified examples per minute, {report['teacher_calls']} teacher calls")
    for gap in report.get("uncovered_tools") or []:
        ui.warn(coverage_message(gap))
    print(f"data report: {report_path(args.out)}")
    return 0 if report["kept_in_file"] >= args.n else 1


def print_summary(run_dir: Path, final: dict, state, ui) -> None:
    if state.stop_reason:
        print(f"Stopped: {state.stop_reason}")
    if not final:
        ui.warn(f"No iteration beat the base model; no final adapter was promoted. See {run_dir}/history.jsonl.")
        return
    base, adapter = final["base"], final["adapter"]
    names = [k for k in ALL_METRICS if k in adapter]
    real = final.get("real")
    if real:
        print()
        ui.table(
            ["real requests", "base", "adapter"], [[k, real["base"].get(k), real["adapter"].get(k)] for k in names]
        )
        print(f"\n{real['rows']} real requests (--eval-data) decided promotion, measured through llama.cpp.")
    print()
    ui.table(["synthetic held-out", "base", "adapter"], [[k, base.get(k), adapter.get(k)] for k in names])
    print(f"\n{final['heldout_examples']} synthetic held-out examples, measured through llama.cpp.")
    if not real:
        print(
            "Every score above is on synthetic data, which the teacher wrote; it does not say how the adapter "
            "does on what your users type. Write 20 real requests (`loraforge init` writes a template, "
            "eval-requests.jsonl) and pass them with --eval-data: they then decide promotion."
        )
    from loraforge.agent.registry import pending

    waiting = pending(run_dir)
    if waiting:
        print(f"Best adapter ({waiting}) waits for approval: loraforge approve {run_dir}")
    else:
        print(f"Best adapter (iteration {final['iteration']}): {run_dir / 'final_adapter'}")
    print(f"Report: loraforge report {run_dir}")


def cmd_report(args: argparse.Namespace) -> int:
    from loraforge.report import build_report

    written = build_report(args.run_dir, args.out)
    plots = [name for name in written if name.endswith(".png")]
    print(f"report: {written['html']} (and {written['markdown'].name}); plots: {', '.join(plots) or 'none yet'}")
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from loraforge.files import atomic_write_json
    from loraforge.publish import hub

    if not args.dry_run and not args.repo_id:
        raise LoraforgeError("upload needs --repo-id user/name (or --dry-run DIR).")
    if not args.adapter_dir.is_dir():
        raise LoraforgeError(f"{args.adapter_dir}: no such adapter folder.")
    if args.dry_run and args.dry_run.exists():
        raise LoraforgeError(f"--dry-run {args.dry_run} already exists.", fix="Name a new folder.")
    if args.intrinsic != (args.io_yaml is not None):
        raise LoraforgeError(
            "--intrinsic and --io-yaml go together: an intrinsic is published with its io.yaml.",
            fix="Pass both (--intrinsic --io-yaml FILE), or neither.",
        )
    io_yaml = hub.read_io_yaml(args.io_yaml) if args.io_yaml else None
    base_id = hub.base_model_id(args.adapter_dir, args.base_model_id)
    with tempfile.TemporaryDirectory(prefix="loraforge-upload-") as scratch:
        folder = args.dry_run or Path(scratch) / "adapter"
        files = hub.stage(args.adapter_dir, folder, base_id, io_yaml)
        print(f"{'Would upload' if args.dry_run else 'To upload'} to {args.repo_id or '(no repository)'}:")
        for path in files:
            print(f"  {path.name} ({path.stat().st_size:,} bytes)")
        print(f"Base model: {base_id or 'no Hub ID known (pass --base-model-id); named by its file'}")
        sample = hub.training_sample(args.adapter_dir)
        if sample:
            print("The adapter learned from data like this (it may show in what the adapter writes):")
            for line in sample:
                print(f"  - {line}")
        if args.dry_run:
            print(f"dry run: the folder is {args.dry_run}")
            return 0
        if not args.yes:
            if not sys.stdin.isatty():
                raise LoraforgeError("upload asks before anything leaves the machine.", fix="Pass --yes to upload.")
            if input("Upload these files? [y/N] ").strip().lower() not in ("y", "yes"):
                print("Nothing uploaded.")
                return 1
        url = hub.upload(folder, args.repo_id, private=args.private, endpoint=os.environ.get("HF_ENDPOINT"))
    atomic_write_json(args.adapter_dir / hub.UPLOAD_RECORD, {"repo_id": args.repo_id, "commit": url})
    print(f"uploaded: {url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "check": cmd_check,
        "run": cmd_run,
        "generate": cmd_generate,
        "train": cmd_train,
        "serve-encoder": cmd_serve_encoder,
        "export": cmd_export,
        "eval": cmd_eval,
        "report": cmd_report,
        "init": cmd_init,
        "rollback": cmd_rollback,
        "approve": cmd_approve,
        "upload": cmd_upload,
    }
    try:
        return handlers[args.command](args)
    except LoraforgeError as exc:
        print(f"loraforge: error: {exc.paragraph()}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: a bug, shown whole
            raise
        problem = exc.strerror or str(exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            problem = "a file stands where a folder is needed"
        print(
            f"loraforge: error: {exc.filename}: {problem}. Check that the path exists, is the kind of file or "
            "folder the command expects, and that you may write there.",
            file=sys.stderr,
        )
        return 2
    except StopRequested:
        print(
            "\nloraforge: stopped; state saved. Continue with `loraforge run --resume RUN_DIR`.",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:
        print(
            "\nloraforge: stopped. Finished phases are saved; continue with `loraforge run --resume RUN_DIR`.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
