"""Simulated tool responses: built from data, never by running anything from a definition."""

from __future__ import annotations

import copy
import random
from typing import Any

from loraforge.tools.definition import ToolDefinition
from loraforge.tools.schema_sampling import sample_value


def simulate_response(tool: ToolDefinition, arguments: dict[str, Any], seed: int) -> Any:
    """A plausible result for the call, deterministic for `seed`.

    It comes from a user-supplied example response where one exists, else from the `returns` schema,
    else a plain acknowledgement. Result fields named like an argument echo that argument's value.
    """
    rng = random.Random(seed)
    responses = [ex.response for ex in tool.examples if ex.response is not None]
    if responses:
        result = copy.deepcopy(rng.choice(responses))
    elif tool.returns:
        result = sample_value(tool.returns, rng, tool.name, optional_rate=1.0)
    else:  # no result schema: an acknowledgement that echoes the request, as most APIs' responses do
        result = {"status": "ok", **copy.deepcopy(arguments)}
    if isinstance(result, dict):
        for key in result:
            if key in arguments and type(arguments[key]) is type(result[key]):
                result[key] = copy.deepcopy(arguments[key])
    return result


def accepts_call(tool: ToolDefinition, arguments: Any) -> str | None:
    """The simulated tool's execution check: None when it would accept these arguments."""
    if not isinstance(arguments, dict):
        return f"arguments must be an object, got {type(arguments).__name__}"
    return tool.validate_arguments(arguments)
