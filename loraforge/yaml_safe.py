"""Safe YAML without aliases, for every file a user hands loraforge (tools files, configs).

Neither has a use for aliases, and a few nested aliases expand to billions of nodes (a "billion laughs"
file) that hang the loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class NoAliasLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses `*name` aliases with an error pointing at their line."""

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in this file", mark)
        return super().compose_node(parent, index)


def load_yaml(text: str):  # noqa: ANN201 (any YAML value)
    """Parse `text` like `yaml.safe_load`, refusing aliases."""
    return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)


def load_user_yaml(path: Path, fix: str, what: str = "read") -> Any:
    """A YAML file the user passed (`what` it should be, for the error), parsed without aliases; a broken,
    binary or bottomless file is a ConfigError that names the file and, where YAML knows it, the line."""
    from loraforge.files import read_user_text

    return parse_user_yaml(read_user_text(path, fix), path, fix, what)


def parse_user_yaml(text: str, path: Path, fix: str, what: str = "read") -> Any:
    """`text`, read from the user's file `path`, parsed as `load_user_yaml` does."""
    from loraforge.errors import ConfigError

    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)}).", fix=fix) from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be {what}.", fix=fix) from None
