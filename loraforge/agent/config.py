"""The settings of one `loraforge run`: a dataclass whose every field is documented and checked.

The same settings come from three places, later ones winning: the defaults below, a YAML file
(`loraforge init` writes a starter with every default visible) and command-line flags.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from loraforge.agent.strategy import StrategyConfig
from loraforge.constants import Artifact
from loraforge.encoders.config import EncoderConfig
from loraforge.errors import ConfigError
from loraforge.generators.plan import GenerationPlan
from loraforge.runtime.config import Engine
from loraforge.settings import build
from loraforge.trainers.config import TrainConfig
from loraforge.yaml_safe import load_user_yaml


@dataclass
class RunConfig:
    """One unattended run: the task, where models come from, how much work each phase does, when to stop."""

    tools: Path | None = field(default=None, metadata={"help": "Tools file (YAML/JSON) to learn to call."})
    labels: Path | None = field(
        default=None, metadata={"help": "Labeled JSONL ({item, label}) to learn to classify, instead of tools."}
    )
    out: Path = field(default=Path("runs/demo"), metadata={"help": "Run folder; every output lands inside it."})
    model: Path | None = field(
        default=None,
        metadata={
            "help": "Base GGUF model, or a packaged one by name (gemma3-270m); "
            "empty: the embedded SmolLM2-135M-Instruct."
        },
    )
    teacher_model: Path | None = field(
        default=None, metadata={"help": "GGUF model that writes synthetic data; empty: the base model."}
    )
    server_urls: list[str] = field(
        default_factory=list,
        metadata={"help": "Running llama-servers used as the teacher, balanced, e.g. ['http://127.0.0.1:8080']."},
    )
    server_model: str | None = field(
        default=None,
        metadata={"help": "The model to ask OpenAI-compatible servers for; empty: the only one they list."},
    )
    judge_urls: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Running servers used as the judge instead (llama.cpp's or any OpenAI-compatible one); "
            "empty: the judge_model, else the teacher."
        },
    )
    llama_server: Path | None = field(
        default=None, metadata={"help": "A llama-server binary to start instead of the embedded server."}
    )
    engine: Engine = field(
        default="xllamacpp",
        metadata={
            "help": "The llama.cpp binding of the servers loraforge starts: 'xllamacpp' (llama.cpp's own "
            "server, the default) or 'llama-cpp-python' (pip install 'loraforge[llama-cpp-python]'; one "
            "request at a time, adapters fixed at load; the export proof stays on xllamacpp)."
        },
    )
    model_kind: Literal["decoder", "encoder"] = field(
        default="decoder",
        metadata={
            "help": "'decoder': a GGUF chat model, served by llama.cpp (tools or labels). 'encoder': a "
            "classifier adapter on an encoder (model: a Hugging Face folder, or minilm-l6, the default) "
            "trained on the labeled rows themselves, with no teacher; served by `loraforge serve-encoder`."
        },
    )
    examples: int = field(default=80, metadata={"help": "Verified examples generated in the first iteration."})
    heldout_fraction: float = field(
        default=0.2, metadata={"help": "Share of the first iteration's examples kept as the held-out set."}
    )
    iterations: int = field(default=3, metadata={"help": "Most generate-train-evaluate rounds."})
    warm_start: bool = field(
        default=False,
        metadata={
            "help": "Train each iteration after the first from the best adapter so far, on its new examples plus "
            "a replay of earlier ones (replay_share), instead of from scratch on every example so far: less "
            "training per iteration. Off by default until its quality is measured against retraining."
        },
    )
    replay_share: float = field(
        default=0.5,
        metadata={
            "help": "With warm_start: earlier training rows replayed per new row, drawn at random (0.5: one for "
            "every two new rows); the task's own worked examples are always replayed."
        },
    )
    time_budget_minutes: float | None = field(
        default=None,
        metadata={
            "help": "Minutes for the whole run: each later iteration is sized from the measured phase times to "
            "end within it, and the run stops when too little is left; empty: no limit."
        },
    )
    phase_timeout_minutes: float = field(
        default=240.0, metadata={"help": "A phase running longer than this stops the run (state is kept)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for data, splits and training."})
    parallel: int = field(
        default=2, metadata={"help": "Teacher requests in flight; more only helps with spare compute (a GPU)."}
    )
    eval_parallel: int = field(
        default=1,
        metadata={"help": "Parallel slots while evaluating; 1 keeps greedy results reproducible run to run."},
    )
    judge: bool = field(default=True, metadata={"help": "Score final answers with the LLM judge."})
    judge_model: Path | None = field(
        default=None,
        metadata={"help": "GGUF model that judges; empty: the teacher (the --server-url servers when given)."},
    )
    eval_max_tokens: int = field(default=128, metadata={"help": "Longest answer generated during evaluation."})
    fidelity_prompts: int = field(
        default=4,
        metadata={
            "help": "Held-out prompts on which each iteration's GGUF export is proven against PEFT through "
            "llama.cpp; an adapter that fails is not promoted. 0 skips the proof (not recommended)."
        },
    )
    eval_data: Path | None = field(
        default=None,
        metadata={
            "help": "Real requests that people wrote, in the `loraforge eval` row format (20 or more; "
            "`loraforge init` writes a template). When given, they decide promotion and the stop rule, the "
            "synthetic held-out set is reported beside them, and they never enter training."
        },
    )
    chat_template: Path | None = field(
        default=None,
        metadata={
            "help": "Jinja chat template that renders tools and tool calls, for a model whose family loraforge "
            "has no template for; copied into the run folder, then trained with and served with."
        },
    )
    feedback_db: Path | None = field(
        default=None,
        metadata={
            "help": "SQLite database of labeled feedback (user corrections) to learn to classify, instead of "
            "labels: a run trains on the rows that no earlier run trained on, and marks them once it has "
            "finished; nothing is deleted."
        },
    )
    feedback_table: str = field(
        default="feedback",
        metadata={
            "help": "The table of feedback_db: columns item (or premise and hypothesis) and label (or "
            "correct_label), and optionally original_label, the model's own answer (for min_error_rate)."
        },
    )
    require_approval: bool = field(
        default=False,
        metadata={
            "help": "Keep a promoted adapter waiting for `loraforge approve RUN_DIR` (which shows the comparison "
            "first) instead of serving it from final_adapter/ at once."
        },
    )
    min_samples: int | None = field(
        default=None, metadata={"help": "Feedback trigger: train only with at least this many labeled rows."}
    )
    min_error_rate: float | None = field(
        default=None, metadata={"help": "Feedback trigger: train only when the current model errs this often."}
    )
    generation: GenerationPlan = field(default_factory=GenerationPlan, metadata={"help": "Synthetic data."})
    training: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "LoRA training."})
    strategy: StrategyConfig = field(default_factory=StrategyConfig, metadata={"help": "Stopping and steering."})
    encoder: EncoderConfig = field(
        default_factory=EncoderConfig, metadata={"help": "Encoder adapter training (model_kind: encoder)."}
    )

    def __post_init__(self) -> None:
        paths = ("tools", "labels", "model", "teacher_model", "judge_model", "llama_server", "eval_data", "feedback_db")
        for name in (*paths, "chat_template"):
            value = getattr(self, name)
            if value is not None and value != "":
                setattr(self, name, Path(value))
            elif value == "":
                setattr(self, name, None)
        self.out = Path(self.out)
        for name, hint in typing.get_type_hints(RunConfig).items():
            value = getattr(self, name)
            if dataclasses.is_dataclass(hint) and isinstance(value, dict):
                setattr(self, name, build(hint, value, name))  # type: ignore[arg-type]
        if self.tools is not None and self.labels is not None:
            raise ConfigError("Both tools and labels were given.", fix="Pass either --tools FILE or --labels FILE.")
        if self.feedback_db is not None and (self.tools is not None or not self._labels_from_feedback()):
            raise ConfigError(
                "feedback_db is the run's labeled data, so it goes without tools or labels.",
                fix="Pass --feedback-db DB alone, or --tools / --labels without it.",
            )
        if self.model_kind == "encoder" and self.tools is not None:
            raise ConfigError(
                "An encoder learns to classify, not to call tools.",
                fix="Pass --labels FILE (or --feedback-db DB) with --model-kind encoder, or drop --model-kind.",
            )
        if self.model_kind == "encoder" and self.encoder.task != "sequence-classification":
            raise ConfigError(
                f"encoder.task is {self.encoder.task!r}, but a run trains a classifier from labeled rows.",
                fix="Train an embedding adapter with `loraforge train DATA --task embedding --outfile DIR`.",
            )
        if self.examples < 10:
            raise ConfigError(f"examples must be at least 10, got {self.examples}.", fix="Use --examples 10 or more.")
        if not 0.05 <= self.heldout_fraction <= 0.5:
            raise ConfigError(f"heldout_fraction must be between 0.05 and 0.5, got {self.heldout_fraction}.")
        if self.iterations < 1:
            raise ConfigError(f"iterations must be at least 1, got {self.iterations}.")
        if not 0 <= self.replay_share <= 10:
            raise ConfigError(f"replay_share must be between 0 and 10, got {self.replay_share}.")
        if self.fidelity_prompts < 0:
            raise ConfigError(f"fidelity_prompts must be 0 or more, got {self.fidelity_prompts}.", fix="0 skips it.")
        positive: list[tuple[str, float | None]] = [("phase_timeout_minutes", self.phase_timeout_minutes)]
        positive += [("parallel", self.parallel)]
        positive += [("eval_parallel", self.eval_parallel), ("eval_max_tokens", self.eval_max_tokens)]
        positive += [("time_budget_minutes", self.time_budget_minutes), ("min_samples", self.min_samples)]
        for name, value in positive:
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}.", fix=f"Set {name} above 0, or leave it out.")
        if self.min_error_rate is not None and not 0 <= self.min_error_rate < 1:
            raise ConfigError(
                f"min_error_rate is a share between 0 and 1, got {self.min_error_rate}.",
                fix="For example --min-error-rate 0.2 trains once the model errs on 20% of the rows.",
            )
        if (
            (self.min_samples is not None or self.min_error_rate is not None)
            and self.labels is None
            and not self.feedback_db
        ):
            raise ConfigError(
                "Training triggers (min_samples, min_error_rate) apply to labeled feedback.",
                fix="Pass --labels FEEDBACK.jsonl, or drop the trigger flags.",
            )
        self.server_urls = [check_server_url(url) for url in self.server_urls]
        self.judge_urls = [check_server_url(url) for url in self.judge_urls]
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"The run folder {self.out} is a file.", fix="Pass --out with a folder name.")
        if self.training.seed not in (0, self.seed):
            raise ConfigError(
                f"training.seed is {self.training.seed} but the run's seed is {self.seed}.",
                fix="A run has one seed for data, splits and training: set `seed` at the top of the config "
                "(or pass --seed), and leave training.seed out.",
            )
        self.training.seed = self.seed

    def _labels_from_feedback(self) -> bool:
        """Whether labels is unset, or is the snapshot that a feedback run took into its folder."""
        return self.labels is None or self.labels == self.out / Artifact.FEEDBACK.value

    def check_task(self) -> None:
        if self.tools is None and self.labels is None:
            raise ConfigError(
                "No task was given.",
                fix="Pass --tools FILE (tool calling) or --labels FILE (classification), or set one in the config.",
            )

    def to_dict(self) -> dict[str, Any]:
        values = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        if self.feedback_db is not None:
            values["labels"] = None  # a feedback run's snapshot is found in its folder, wherever that is resumed from
        return values


def check_server_url(url: Any) -> str:
    """An http(s) URL of a llama-server, or a ConfigError saying what one looks like."""
    from urllib.parse import urlparse

    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"{url!r} is not a server URL.", fix="Give the llama-server's address, e.g. http://127.0.0.1:8080."
        )
    return url


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """RunConfig from a YAML file, then `overrides` (from flags) on top; errors name the file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.", fix="Write one with `loraforge init`.")
    data = load_user_yaml(path, "Pass a YAML config (`loraforge init` writes one).", "a config") or {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config is a mapping of settings, but this file holds a {type(data).__name__}.",
            fix="Write one with `loraforge init` and edit it.",
        )
    try:
        return build(RunConfig, merge(data, overrides or {}), "config")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", fix=exc.fix) from exc


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _yaml_value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip() or "null"


def _section(obj: Any, indent: str = "") -> list[str]:
    lines = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        help_text = f.metadata.get("help", "")
        if dataclasses.is_dataclass(value):
            lines += ["", f"{indent}# {help_text}", f"{indent}{f.name}:"]
            lines += _section(value, indent + "  ")
            continue
        for part in [help_text] if help_text else []:
            lines.append(f"{indent}# {part}")
        lines.append(f"{indent}{f.name}: {_yaml_value(value)}")
    return lines


def starter_yaml(config: RunConfig | None = None) -> str:
    """Every setting with its default and its help, as a YAML file that `load_config` accepts."""
    config = config or RunConfig(tools=Path("examples/assistant-tools.yaml"))
    header = [
        "# loraforge run configuration. Every setting is shown with its default.",
        "# Run it with: loraforge run --config THIS_FILE  (command-line flags override it)",
    ]
    return "\n".join(header + _section(config)) + "\n"
