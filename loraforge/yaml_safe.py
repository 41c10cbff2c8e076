"""Safe YAML without aliases, for every file a user hands loraforge (tools files, configs).

Neither has a use for aliases, and a few nested aliases expand to billions of nodes (a "billion laughs"
file) that hang the loader.
"""

from __future__ import annotations

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
