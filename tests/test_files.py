import pytest

from loraforge.errors import ConfigError
from loraforge.files import append_jsonl, atomic_write_json, inside, read_json, read_jsonl


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert read_json(tmp_path / "a.json") == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_torn_last_line_is_skipped_only_when_tolerant(tmp_path):
    path = tmp_path / "d.jsonl"
    append_jsonl(path, [{"i": 1}, {"i": 2}])
    with open(path, "a") as handle:
        handle.write('{"i": 3, "tor')
    assert [r["i"] for r in read_jsonl(path, tolerant=True)] == [1, 2]
    with pytest.raises(ConfigError, match="line 3"):
        read_jsonl(path)


def test_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ConfigError, match=r"d.jsonl, line 2: expected a JSON object"):
        read_jsonl(path)


def test_paths_from_configs_stay_inside_the_run_folder(tmp_path):
    assert inside(tmp_path, "iteration_1/adapter.gguf") == (tmp_path / "iteration_1" / "adapter.gguf").resolve()
    with pytest.raises(ConfigError, match="outside the run folder"):
        inside(tmp_path, "../../etc/passwd")
