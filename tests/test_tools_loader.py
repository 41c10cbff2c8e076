import json
from pathlib import Path

import pytest

from loraforge.errors import ConfigError
from loraforge.tools import ToolDefinition, load_tools

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_file_loads_every_tool():
    tools = load_tools(EXAMPLES / "assistant-tools.yaml")
    names = [t.name for t in tools]
    assert len(names) == len(set(names)) >= 5
    for tool in tools:
        assert tool.parameters["type"] == "object"
        for example in tool.examples:
            assert tool.validate_arguments(example.arguments) is None


def test_openai_form_in_json(tmp_path):
    path = tmp_path / "tools.json"
    path.write_text(
        json.dumps(
            [
                {
                    "type": "function",
                    "function": {
                        "name": "ping",
                        "description": "Ping a host.",
                        "parameters": {
                            "type": "object",
                            "properties": {"host": {"type": "string"}},
                            "required": ["host"],
                        },
                    },
                }
            ]
        )
    )
    (tool,) = load_tools(path)
    assert tool.name == "ping" and tool.required == ["host"]
    assert tool.to_openai()["function"]["parameters"]["properties"]["host"]["type"] == "string"


def test_bad_schema_names_file_line_tool_and_path(tools_yaml):
    path = tools_yaml(
        "tools:\n"
        "  - name: ok_tool\n"
        "    description: Fine.\n"
        "    parameters: {type: object, properties: {a: {type: string}}}\n"
        "  - name: broken\n"
        "    description: Broken schema.\n"
        "    parameters:\n"
        "      type: object\n"
        "      properties:\n"
        "        unit: {type: strin}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_tools(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 5" in message
    assert "'broken'" in message
    assert "parameters.properties.unit.type" in message


def test_duplicate_names_are_refused(tools_yaml):
    tool = "  - {name: same, description: d, parameters: {type: object, properties: {}}}\n"
    with pytest.raises(ConfigError, match="already used by tool #1"):
        load_tools(tools_yaml("tools:\n" + tool + tool))


@pytest.mark.parametrize(
    "entry, fragment",
    [
        ("{name: '1bad', description: d}", "not a valid function name"),
        ('{name: "ping\\n", description: d}', "not a valid function name"),
        ("{name: nodesc, parameters: {type: object}}", "description is missing"),
        ("{name: arr, description: d, parameters: {type: array}}", "parameters.type must be 'object'"),
        ("{name: req, description: d, parameters: {type: object, properties: {}, required: [x]}}", "'x'"),
        ("{name: extra, description: d, colour: red}", "unknown keys ['colour']"),
        (
            "{name: ex, description: d, parameters: {type: object, properties: {n: {type: integer}}}, "
            "examples: [{request: hi, arguments: {n: two}}]}",
            "examples[0].arguments",
        ),
    ],
)
def test_each_problem_gets_a_specific_message(tools_yaml, entry, fragment):
    with pytest.raises(ConfigError) as info:
        load_tools(tools_yaml(f"- {entry}\n"))
    assert fragment in str(info.value)


def test_yaml_syntax_error_reports_line(tools_yaml):
    with pytest.raises(ConfigError, match=r"line \d+: not valid YAML"):
        load_tools(tools_yaml("tools:\n  - name: a\n    description: [unclosed\n"))


def test_missing_file_and_empty_file(tmp_path, tools_yaml):
    with pytest.raises(ConfigError, match="does not exist"):
        load_tools(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="no tools found"):
        load_tools(tools_yaml("tools: []\n"))


def test_python_api_validates_on_creation():
    with pytest.raises(ConfigError, match="not a valid function name"):
        ToolDefinition(name="has space", description="d")
    tool = ToolDefinition(
        name="add",
        description="Add two numbers.",
        parameters={"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]},
        examples=[{"request": "add 2", "arguments": {"a": 2}}],
    )
    assert tool.validate_arguments({"a": "x"}) is not None
    assert tool.validate_arguments({"a": 1.5}) is None


def test_toolset_add_tool_from_fields_or_objects():
    from loraforge.tools import ToolSet

    tools = ToolSet()
    tools.add_tool(name="ping", description="Ping a host.", parameters={"type": "object", "properties": {}})
    tools.add_tool(ToolDefinition(name="pong", description="Answer a ping."))
    assert [t.name for t in tools] == ["ping", "pong"] and tools["pong"].description == "Answer a ping."
    with pytest.raises(ConfigError, match="already defined"):
        tools.add_tool(name="ping", description="Again.")
