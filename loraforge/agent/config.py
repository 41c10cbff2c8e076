"""The settings of one `loraforge run`: a dataclass whose every field is documented and checked."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loraforge.errors import ConfigError
from loraforge.generators.plan import GenerationPlan
from loraforge.trainers.config import TrainConfig


@dataclass
class RunConfig:
    """One unattended run: the task, where models come from, and how much work each phase does."""

    tools: Path | None = field(default=None, metadata={"help": "Tools file (YAML/JSON), e.g. tools.yaml."})
    out: Path = field(default=Path("runs/demo"), metadata={"help": "Run folder; every output lands inside it."})
    model: Path | None = field(
        default=None, metadata={"help": "Base GGUF model; default: the embedded SmolLM2-135M-Instruct."}
    )
    teacher_model: Path | None = field(
        default=None, metadata={"help": "GGUF model that writes synthetic data; default: the base model."}
    )
    server_urls: list[str] = field(
        default_factory=list,
        metadata={"help": "Running llama-servers used as the teacher, balanced, e.g. ['http://127.0.0.1:8080']."},
    )
    llama_server: Path | None = field(
        default=None, metadata={"help": "A llama-server binary to start instead of the embedded server."}
    )
    examples: int = field(default=80, metadata={"help": "Verified examples generated in the first iteration."})
    heldout_fraction: float = field(
        default=0.2, metadata={"help": "Share of the first iteration's examples kept as the held-out set."}
    )
    iterations: int = field(default=1, metadata={"help": "Generate-train-evaluate rounds, e.g. 3."})
    seed: int = field(default=0, metadata={"help": "Seed for data, splits and training."})
    parallel: int = field(
        default=2, metadata={"help": "Teacher requests in flight; more only helps with spare compute (a GPU)."}
    )
    eval_parallel: int = field(
        default=1,
        metadata={"help": "Parallel slots while evaluating; 1 keeps greedy results reproducible run to run."},
    )
    judge: bool = field(default=True, metadata={"help": "Score final answers with the LLM judge (the base model)."})
    eval_max_tokens: int = field(default=128, metadata={"help": "Longest answer generated during evaluation."})
    generation: GenerationPlan = field(default_factory=GenerationPlan)
    training: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        for name in ("tools", "model", "teacher_model", "llama_server"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        self.out = Path(self.out)
        if isinstance(self.generation, dict):
            self.generation = GenerationPlan(**self.generation)
        if isinstance(self.training, dict):
            self.training = TrainConfig.from_dict(self.training)
        if self.tools is None:
            raise ConfigError("No task was given.", fix="Pass --tools FILE with the tools to learn.")
        if self.examples < 10:
            raise ConfigError(f"examples must be at least 10, got {self.examples}.", fix="Use --examples 10 or more.")
        if not 0.05 <= self.heldout_fraction <= 0.5:
            raise ConfigError(f"heldout_fraction must be between 0.05 and 0.5, got {self.heldout_fraction}.")
        if self.iterations < 1:
            raise ConfigError(f"iterations must be at least 1, got {self.iterations}.")
        self.training.seed = self.seed

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
