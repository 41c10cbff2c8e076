"""The serving bundle: serve.sh quotes its paths and keeps them relative to the bundle, whatever the
folder is called; the model card and Modelfile."""

import json
import os
import subprocess
from pathlib import Path

from loraforge.trainers.bundle import write_bundle


def test_serve_sh_survives_spaces_quotes_and_command_substitution(tmp_path):
    folder = tmp_path / "my adapter 'x\" $(touch PWNED) `touch PWNED2`"
    folder.mkdir()
    (folder / "adapter.gguf").write_bytes(b"GGUF")
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    base = tmp_path / "base $(touch PWNED3).gguf"
    write_bundle(folder, base)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "llama-server").write_text('#!/bin/sh\nfor a in "$@"; do echo "[$a]"; done\n')
    (fake / "llama-server").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    out = subprocess.run([str(folder / "serve.sh"), "--extra"], capture_output=True, text=True, env=env, check=True)
    args = out.stdout.splitlines()
    assert f"[{base}]" in args and "[adapter.gguf]" in args and "[chat_template.jinja]" in args
    assert args[-1] == "[--extra]"
    assert not list(tmp_path.rglob("PWNED*")) and not list(folder.rglob("PWNED*"))


def test_serve_sh_leaves_out_a_missing_template(tmp_path):
    (tmp_path / "adapter.gguf").write_bytes(b"GGUF")
    write_bundle(tmp_path, tmp_path / "base.gguf")
    text = (tmp_path / "serve.sh").read_text()
    assert "--lora adapter.gguf" in text and "chat_template" not in text


def test_the_bundle_keeps_files_it_did_not_write(tmp_path):
    """An adapter folder with the user's own README.md: export writes serve.sh and Modelfile, not over it."""
    (tmp_path / "adapter.gguf").write_bytes(b"GGUF")
    mine = "# My notes on this adapter\nkeep me\n"
    (tmp_path / "README.md").write_text(mine)
    written = write_bundle(tmp_path, tmp_path / "base.gguf")
    assert (tmp_path / "README.md").read_text() == mine
    assert {p.name for p in written} == {"serve.sh", "Modelfile"}
    # Its own files it rewrites: a second export refreshes them.
    (tmp_path / "README.md").unlink()
    write_bundle(tmp_path, tmp_path / "base.gguf")
    again = write_bundle(tmp_path, tmp_path / "base.gguf")
    assert {p.name for p in again} == {"serve.sh", "Modelfile", "README.md"}


def test_bundle_files(tmp_path):
    (tmp_path / "metrics.json").write_text(
        json.dumps(
            {
                "base": {"exact_match": 0.0, "tool_name_accuracy": 0.1},
                "adapter": {"exact_match": 0.5, "tool_name_accuracy": 0.9},
                "heldout_examples": 16,
            }
        )
    )
    paths = write_bundle(
        tmp_path,
        tmp_path / "base.gguf",
        {"top1_agreement": 1.0, "top1_agreement_near_ties": 1.0, "near_ties": [], "positions": 10, "greedy_match": 1.0},
    )
    names = {p.name for p in paths}
    assert names == {"serve.sh", "Modelfile", "README.md"}
    card = (tmp_path / "README.md").read_text()
    assert "| exact_match | 0.000 | 0.500 |" in card and "top-1 agreement 1.0000" in card
    assert "ADAPTER ./adapter.gguf" in (tmp_path / "Modelfile").read_text()
    assert "--host 127.0.0.1" in (tmp_path / "serve.sh").read_text()


def test_serve_sh_names_a_relative_base_model_from_anywhere(tmp_path, monkeypatch):
    """serve.sh changes into the bundle's folder first, so a base model given relative to where the
    command ran must be written as an absolute path."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    write_bundle(folder, Path("models") / "base.gguf")
    text = (folder / "serve.sh").read_text()
    assert f"-m {tmp_path.resolve() / 'models' / 'base.gguf'}" in text


def test_the_modelfile_stops_at_the_end_of_turn_of_the_adapters_family():
    from loraforge.chat.format import builtin_template
    from loraforge.trainers.bundle import modelfile

    chatml = modelfile(Path("/m.gguf"))
    assert "PARAMETER stop <|im_end|>" in chatml and "TEMPLATE" in chatml
    gemma = modelfile(Path("/m.gguf"), builtin_template("gemma3-tools.jinja"))
    assert "PARAMETER stop <end_of_turn>" in gemma and "<|im_start|>" not in gemma
