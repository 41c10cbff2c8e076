"""The Python API: the same loop as `loraforge run`, driven from code.

forge = LoRAForge({"out": "runs/api", "examples": 40})
forge.add_tool(ToolDefinition(name="get_weather", description="...", parameters={...}))
best_adapter, metrics = await forge.create_adapter(num_iterations=3)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from loraforge.agent.config import RunConfig
from loraforge.agent.orchestrator import Orchestrator
from loraforge.agent.tasks import ToolTask
from loraforge.constants import Artifact
from loraforge.errors import ConfigError
from loraforge.files import atomic_write_json
from loraforge.settings import build
from loraforge.tools import ToolDefinition, ToolSet, load_tools, validate_tool
from loraforge.ui import UI


class LoRAForge:
    """Configure a run, add tools, then `await create_adapter()`."""

    def __init__(self, config: RunConfig | dict[str, Any] | None = None, *, quiet: bool = False, **settings: Any):
        if isinstance(config, RunConfig):
            built = dataclasses.replace(config, **settings) if settings else config
        else:
            built = build(RunConfig, {**(config or {}), **settings}, "config")
        self.config: RunConfig = built
        self.ui = UI(quiet=quiet)
        self.tools = ToolSet(load_tools(built.tools) if built.tools else [])

    def add_tool(self, tool: ToolDefinition | None = None, **fields: Any) -> ToolDefinition:
        """Add a tool (a ToolDefinition, or its fields as keywords); it is validated at once."""
        tool = tool if tool is not None else ToolDefinition(**fields)
        problems = validate_tool(tool)
        if problems:
            raise ConfigError(f"Tool {tool.name!r}: " + "; ".join(problems))
        return self.tools.add_tool(tool)

    async def create_adapter(self, num_iterations: int | None = None) -> tuple[Path | None, dict[str, Any]]:
        """Run the loop; returns the best adapter's folder (None if no adapter beat the base) and its metrics."""
        config = self.config
        if num_iterations is not None:
            config = dataclasses.replace(config, iterations=num_iterations)
        task = None
        if config.labels is None:
            if not len(self.tools):
                raise ConfigError("No tools were added.", fix="Call add_tool(...) before create_adapter().")
            # The tools are written into the run folder, so `loraforge run --resume` can pick the run up.
            config.out.mkdir(parents=True, exist_ok=True)
            tools_file = config.out / "tools.json"
            atomic_write_json(tools_file, [t.to_openai() for t in self.tools])
            config = dataclasses.replace(config, tools=tools_file)
            task = ToolTask(self.tools.list(), tools_file)
        metrics = await Orchestrator(config, self.ui, task).run()
        final = config.out / Artifact.FINAL_ADAPTER.value
        return (final if final.is_dir() else None), metrics
