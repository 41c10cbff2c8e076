import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def tools_yaml(tmp_path):
    def write(text: str, name: str = "tools.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
