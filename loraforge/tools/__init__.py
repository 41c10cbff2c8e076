"""Tool definitions, their loading and validation, and simulated tool responses."""

from loraforge.tools.definition import ToolDefinition, ToolExample, ToolSet, validate_tool
from loraforge.tools.loader import load_tools, tool_from_mapping

__all__ = ["ToolDefinition", "ToolExample", "ToolSet", "load_tools", "tool_from_mapping", "validate_tool"]
