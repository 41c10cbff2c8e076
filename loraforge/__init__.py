"""loraforge: turn a base model and a task into a verified LoRA adapter for llama.cpp."""

from loraforge.agent.config import RunConfig
from loraforge.tools import ToolDefinition

__all__ = ["LoRAForge", "RunConfig", "ToolDefinition"]


def __getattr__(name: str):
    # The API pulls in the orchestrator; import it only when asked for.
    if name == "LoRAForge":
        from loraforge.api import LoRAForge

        return LoRAForge
    raise AttributeError(name)
