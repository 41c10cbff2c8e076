import json
from pathlib import Path

import pytest

from loraforge.chat.format import ChatFormat, builtin_template, normalise_messages

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Time in a zone.",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
        },
    }
]
CHAT = [
    {"role": "user", "content": "Time in Tokyo?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}}}],
    },
    {"role": "tool", "content": '{"time": "09:00"}'},
    {"role": "assistant", "content": "It is 09:00 in Tokyo."},
]


def test_tools_and_calls_are_rendered():
    text = ChatFormat(builtin_template()).render(CHAT, TOOLS)
    assert text.startswith("<|im_start|>system\n")
    assert json.dumps(TOOLS[0]["function"], ensure_ascii=False) in text
    assert '<tool_call>{"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}}</tool_call><|im_end|>' in text
    assert "<|im_start|>tool\n" in text and text.endswith("It is 09:00 in Tokyo.<|im_end|>\n")


def test_segments_train_only_assistant_turns_and_join_to_the_rendering():
    fmt = ChatFormat(builtin_template())
    segments = fmt.segments(CHAT, TOOLS)
    assert "".join(text for text, _ in segments) == fmt.render(CHAT, TOOLS)
    trained = [text for text, is_trained in segments if is_trained]
    assert trained == [
        '<tool_call>{"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}}</tool_call><|im_end|>',
        "It is 09:00 in Tokyo.<|im_end|>",
    ]
    assert all("<|im_start|>" not in text for text in trained)


def test_generation_prompt_is_a_prefix_of_the_full_chat():
    fmt = ChatFormat(builtin_template())
    prompt = fmt.render(CHAT[:1], TOOLS, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert fmt.render(CHAT, TOOLS).startswith(prompt)


def test_string_arguments_render_like_objects():
    fmt = ChatFormat(builtin_template())
    as_string = [
        CHAT[0],
        {
            "role": "assistant",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_time", "arguments": '{"zone": "Asia/Tokyo"}'}}
            ],
        },
    ]
    assert fmt.render(as_string, TOOLS) == fmt.render(CHAT[:2], TOOLS)
    assert normalise_messages(as_string)[1]["content"] == ""


def test_system_message_is_kept_and_default_used_otherwise():
    fmt = ChatFormat(builtin_template())
    assert "Be brief." in fmt.render([{"role": "system", "content": "Be brief."}, CHAT[0]])
    assert "You are a helpful assistant." in fmt.render([CHAT[0]])


PLAIN_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_users_chat_template_is_checked_before_use(tmp_path):
    import pytest

    from loraforge.chat.format import load_template_file, template_for_model
    from loraforge.errors import ConfigError

    good = tmp_path / "good.jinja"
    good.write_text(builtin_template())
    text = load_template_file(good)
    assert template_for_model("anything, even a family loraforge does not know", text) == text
    plain = tmp_path / "plain.jinja"  # renders chats, but neither the tools nor the calls
    plain.write_text(PLAIN_CHATML)
    with pytest.raises(ConfigError, match="renders without probe_lookup, probe_key, probe-value-7") as info:
        load_template_file(plain)
    assert "plain.jinja" in str(info.value)
    broken = tmp_path / "broken.jinja"
    broken.write_text("line one\n{% for m in messages %}\n{{ m.content }\n")
    with pytest.raises(ConfigError, match=r"broken.jinja, line \d+: the template does not render"):
        load_template_file(broken)
    with pytest.raises(ConfigError, match="no such file"):
        load_template_file(tmp_path / "missing.jinja")
    with pytest.raises(ConfigError) as info:  # the flag that the error names exists
        template_for_model("<|user|>\n{{ messages[0].content }}<|end|>")
    assert "--chat-template FILE" in info.value.fix


def test_an_adapter_keeps_the_template_it_was_trained_with(tmp_path):
    import pytest

    from loraforge.cli import adopt_template
    from loraforge.errors import LoraforgeError

    mine = tmp_path / "mine.jinja"
    mine.write_text(builtin_template().replace("a helpful assistant", "a careful assistant"))
    assert mine.read_text() != builtin_template()
    outside = tmp_path / "peft-adapter"  # trained elsewhere: no template of its own
    outside.mkdir()
    adopt_template(outside, mine)
    assert (outside / "chat_template.jinja").read_text() == mine.read_text()
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "chat_template.jinja").write_text(builtin_template())
    with pytest.raises(LoraforgeError, match="was trained with its own chat_template.jinja"):
        adopt_template(ours, mine)
    assert (ours / "chat_template.jinja").read_text() == builtin_template()


def test_an_adapter_is_served_with_the_override_then_its_own_template_then_the_base_family_one(tmp_path):
    from loraforge.chat.format import adapter_template
    from loraforge.errors import ConfigError

    chatml = "{{ '<|im_start|>' }}"
    assert adapter_template(tmp_path, chatml) == builtin_template()  # nothing saved: the family's template
    (tmp_path / "chat_template.jinja").write_text("saved")
    assert adapter_template(tmp_path, chatml) == "saved"
    assert adapter_template(tmp_path, chatml, override="mine") == "mine"
    with pytest.raises(ConfigError, match="not one of the families"):
        adapter_template(None, "{{ '<|user|>' }}")  # a base alone, of a family loraforge has no template for


FAMILY_MARKUP = {  # a fragment of each family's own chat markup, as a model's GGUF template holds it
    "granite": "{{ '<|start_of_role|>user<|end_of_role|>' + m.content + '<|end_of_text|>' }}",
    "llama3": "{{ '<|start_header_id|>user<|end_header_id|>\\n\\n' + m.content + '<|eot_id|>' }}",
    "gemma3": "{{ '<start_of_turn>user\\n' + m.content + '<end_of_turn>' }}",
    "mistral": "{{ '[INST]' + m.content + '[/INST]' }}",
    "qwen": "{{ '<|im_start|>user\\n<tool_response>' + m.content + '<|im_end|>' }}",
    "chatml": "{{ '<|im_start|>user\\n' + m.content + '<|im_end|>' }}",
}


@pytest.mark.parametrize("name", sorted(FAMILY_MARKUP))
def test_each_family_template_trains_tool_calls_in_its_own_markup(name):
    """A base model of each family gets that family's template: it renders the tools, the calls and the
    results, as prompts that grow turn by turn, each assistant turn (and nothing else) ending in the
    family's end-of-turn text."""
    from loraforge.chat.families import BY_NAME, family_of
    from loraforge.chat.format import template_for_model, template_problem

    family = BY_NAME[name]
    assert family_of(FAMILY_MARKUP[name]) is family
    template = template_for_model(FAMILY_MARKUP[name])
    assert template == builtin_template(family.template) and family_of(template) is family
    assert template_problem(template) is None
    fmt = ChatFormat.of(template)
    assert fmt.eos_token == family.end_of_turn
    pieces = fmt.segments(CHAT, TOOLS)
    trained = [text for text, on in pieces if on]
    assert len(trained) == 2 and all(text.endswith(family.end_of_turn) for text in trained)
    assert "Asia/Tokyo" in trained[0] and "It is 09:00 in Tokyo." in trained[1]
    context = "".join(text for text, on in pieces if not on)
    assert "09:00" in context and "Time in Tokyo?" in context and "get_time" in context
    assert fmt.render(CHAT[:1], TOOLS, add_generation_prompt=True) == pieces[0][0]


def test_a_models_own_template_is_used_when_it_renders_tool_calls():
    from loraforge.chat.format import template_for_model

    own = builtin_template("qwen-tools.jinja").replace("For each call", "Per call")  # a Qwen model's own
    assert template_for_model(own) == own
    assert template_for_model(FAMILY_MARKUP["qwen"]) == builtin_template("qwen-tools.jinja")
    dated = own.replace("# Tools", "Today is {{ date_string }}. # Tools")  # llama.cpp would print today's date
    assert template_for_model(dated) == builtin_template("qwen-tools.jinja")


def test_a_base_model_without_a_template_gets_the_family_of_its_architecture():
    from loraforge.chat.format import template_for_model

    gemma_base = template_for_model(None, architecture="gemma3")
    assert gemma_base != builtin_template("gemma3-tools.jinja")  # the base variant, below
    assert gemma_base.replace("'<eos>'", "'<end_of_turn>'") == builtin_template("gemma3-tools.jinja")
    assert template_for_model(None, architecture="qwen2") == builtin_template("qwen-tools.jinja")
    assert template_for_model(None, architecture="llama") == builtin_template()  # SmolLM2, Llama, Mistral: ChatML
    assert template_for_model(None) == builtin_template()


def test_a_gemma_base_model_ends_its_turns_with_eos_and_an_instruct_model_with_end_of_turn():
    """A base Gemma never learned <end_of_turn> (an adapter cannot teach it, see chat/families.py): its
    assistant turns end with <eos>, which is trained and where serving stops; user turns keep Gemma's markup."""
    from loraforge.chat.format import template_for_model
    from loraforge.trainers.bundle import modelfile

    messages = [
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {}}}]},
        {"role": "tool", "content": "rain"},
        {"role": "assistant", "content": "It rains."},
    ]
    base = ChatFormat.of(template_for_model(None, architecture="gemma3"))
    instruct = ChatFormat.of(builtin_template("gemma3-tools.jinja"))
    assert (base.eos_token, instruct.eos_token) == ("<eos>", "<end_of_turn>")
    trained = [text for text, on in base.segments(messages, TOOLS) if on]
    assert len(trained) == 2 and all(text.endswith("<eos>") for text in trained)
    assert "</tool_response><end_of_turn>" in base.render(messages, TOOLS)
    assert all(text.endswith("<end_of_turn>") for text, on in instruct.segments(messages, TOOLS) if on)
    assert "PARAMETER stop <eos>" in modelfile(Path("base.gguf"), base.template)
    assert "PARAMETER stop <end_of_turn>" in modelfile(Path("base.gguf"), instruct.template)


PHI_STYLE = """{% for m in messages %}{% if m.role == 'assistant' %}<|assistant|>
{{ m.content }}{% for c in m.tool_calls or [] %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}<|end|>
{% else %}<|{{ m.role }}|>
{{ m.content }}{% if loop.first and tools %} Tools: {% for t in tools %}{{ t | tojson }}{% endfor %}{% endif %}<|end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>
{% endif %}"""


def test_a_users_template_of_an_unknown_family_trains_with_the_end_of_turn_it_writes(tmp_path):
    from loraforge.chat.format import load_template_file

    path = tmp_path / "phi.jinja"
    path.write_text(PHI_STYLE)
    assert load_template_file(path) == PHI_STYLE  # not refused for lacking ChatML's <|im_end|>
    fmt = ChatFormat.of(PHI_STYLE)
    assert fmt.eos_token == "<|end|>"
    trained = [text for text, on in fmt.segments(CHAT, TOOLS) if on]
    assert len(trained) == 2 and all(text.endswith("<|end|>") for text in trained)
