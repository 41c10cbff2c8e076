"""The child process of the llama-cpp-python engine: loraforge's chat template, then llama_cpp.server.

    python -m loraforge.runtime.llama_cpp_python_cli --config_file server.json [--chat-template-file T]

llama_cpp.server renders chat prompts with a named chat format. This registers the template in
`--chat-template-file` under the name CHAT_FORMAT (rendered as llama.cpp's server renders it: with the tools
and a generation prompt, stopping at the model's end-of-sequence token), then runs the server with the other
arguments. The template is data: it is rendered in Jinja's sandbox, as llama-cpp-python renders every template.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

CHAT_FORMAT = "loraforge"


def register_template(template: str) -> None:
    """Make `template` llama-cpp-python's chat format CHAT_FORMAT, for whichever model uses it."""
    from llama_cpp import llama_chat_format as formats

    handlers: dict[tuple[str, str, int], Any] = {}  # one compiled template per (bos, eos) of a model

    def text(llama: Any, token: int) -> str:
        return llama.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""

    @formats.register_chat_completion_handler(CHAT_FORMAT)
    def handle(*, llama: Any, **request: Any) -> Any:
        eos = llama.token_eos()
        key = (text(llama, llama.token_bos()), text(llama, eos), eos)
        if key not in handlers:
            formatter = formats.Jinja2ChatFormatter(template, bos_token=key[0], eos_token=key[1], stop_token_ids=[eos])
            handlers[key] = formatter.to_chat_handler()
        return handlers[key](llama=llama, **request)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loraforge-llama-cpp-python", add_help=False)
    parser.add_argument("--chat-template-file")
    ours, rest = parser.parse_known_args(argv)
    if ours.chat_template_file:
        register_template(Path(ours.chat_template_file).read_text(encoding="utf-8"))
    from llama_cpp.server.__main__ import main as serve

    sys.argv = ["llama_cpp.server", *rest]
    serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
