"""Finding the base model: a path, the embedded default, or a packaged model by its short name."""

import importlib.metadata

import pytest

from loraforge.errors import ConfigError
from loraforge.models import is_gguf, resolve_model
from loraforge.models.paths import PACKAGED_MODELS


def installed(package: str) -> bool:
    try:
        importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_a_missing_model_names_the_packaged_ones(tmp_path):
    with pytest.raises(ConfigError) as caught:
        resolve_model(tmp_path / "nope.gguf")
    assert "nope.gguf" in str(caught.value) and "gemma3-270m" in caught.value.fix


def test_a_file_named_like_a_packaged_model_is_taken_as_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gemma3-270m").write_bytes(b"GGUF" + bytes(16))
    assert resolve_model("gemma3-270m") == (tmp_path / "gemma3-270m").resolve()


@pytest.mark.parametrize("name", sorted(PACKAGED_MODELS))
def test_packaged_models_resolve_to_a_gguf_or_say_how_to_install(name):
    package, install = PACKAGED_MODELS[name]
    if installed(package):
        path = resolve_model(name)
        assert path.is_file() and is_gguf(path)
    else:
        with pytest.raises(ConfigError) as caught:
            resolve_model(name)
        assert install in caught.value.fix
