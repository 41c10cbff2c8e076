"""The llama-server child process: flags, health wait, and stopping. A stub binary stands in at the process
boundary so that the lifecycle is tested without building llama.cpp."""

import json
import sys
import textwrap
import urllib.request

import pytest

from loraforge.errors import ServerError
from loraforge.runtime import BinaryServer, ServerConfig, make_server
from loraforge.runtime.server import EmbeddedServer, ExternalServer

STUB = textwrap.dedent(
    """\
    #!{python}
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    args = sys.argv[1:]
    open({record!r}, "w").write(json.dumps(args))
    if "--die" in open({record!r}).read() or {die}:
        sys.exit(3)
    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b'{{"status": "ok"}}')
        def log_message(self, *a):
            pass
    HTTPServer((args[args.index("--host") + 1], int(args[args.index("--port") + 1])), Health).serve_forever()
    """
)


def stub(tmp_path, die=False):
    record = tmp_path / "argv.json"
    path = tmp_path / "llama-server"
    path.write_text(STUB.format(python=sys.executable, record=str(record), die=die))
    path.chmod(0o755)
    return path, record


def test_binary_server_flags_health_and_stop(tmp_path):
    binary, record = stub(tmp_path)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    adapter = tmp_path / "a.gguf"
    config = ServerConfig(
        model_path=model,
        llama_server=binary,
        chat_template="{{ x }}",
        lora_adapters=[adapter],
        n_parallel=2,
        threads=1,
        startup_timeout=20,
    )
    server = make_server(config)
    assert isinstance(server, BinaryServer)
    with server:
        assert server.alive()
        assert urllib.request.urlopen(server.base_url + "/health").status == 200
        args = json.loads(record.read_text())
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert args[args.index("--lora") + 1] == str(adapter)
    assert "--jinja" in args and "--chat-template-file" in args and "--lora-init-without-apply" in args
    assert args[args.index("--cache-ram") + 1] == "0"
    assert not server.alive()
    server.stop()  # stopping twice is safe


def test_binary_that_exits_at_start_is_reported(tmp_path):
    binary, _ = stub(tmp_path, die=True)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(ServerError, match="exited during start-up") as info:
        BinaryServer(ServerConfig(model_path=model, llama_server=binary, startup_timeout=20)).start()
    assert "server.log" in info.value.fix and "check --deep" in info.value.fix


def test_llama_cpp_path_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "build" / "bin").mkdir(parents=True)
    binary, _ = stub(tmp_path / "build" / "bin")
    monkeypatch.setenv("LLAMA_CPP_PATH", str(tmp_path))
    assert ServerConfig(model_path=tmp_path / "m.gguf").llama_server == binary


def test_server_kind_is_chosen_from_the_config(tmp_path, monkeypatch):
    monkeypatch.delenv("LLAMA_CPP_PATH", raising=False)
    assert isinstance(make_server(ServerConfig(server_url="http://127.0.0.1:1")), ExternalServer)
    assert isinstance(make_server(ServerConfig(model_path=tmp_path / "m.gguf")), EmbeddedServer)


def test_server_kind_for_the_llama_cpp_python_engine(tmp_path, monkeypatch):
    from loraforge.errors import ConfigError
    from loraforge.runtime.llama_cpp_python import LlamaCppPythonServer

    monkeypatch.delenv("LLAMA_CPP_PATH", raising=False)
    config = ServerConfig(model_path=tmp_path / "m.gguf", engine="llama-cpp-python")
    assert isinstance(make_server(config), LlamaCppPythonServer)
    with pytest.raises(ConfigError, match="Unknown engine 'vllm'"):
        ServerConfig(model_path=tmp_path / "m.gguf", engine="vllm")  # type: ignore[arg-type]


def test_the_llama_cpp_python_server_config_keeps_the_key_private_and_one_model_per_adapter(tmp_path):
    import os
    import stat
    import tempfile

    from loraforge.runtime.llama_cpp_python import LlamaCppPythonServer

    adapters = [tmp_path / "a.gguf", tmp_path / "b.gguf"]
    config = ServerConfig(
        model_path=tmp_path / "m.gguf",
        engine="llama-cpp-python",
        chat_template="{{ messages }}",
        lora_adapters=adapters,
        n_parallel=4,
        n_ctx=8192,
        threads=2,
    )
    server = LlamaCppPythonServer(config)
    server._tmpdir = tempfile.TemporaryDirectory()  # what start() makes before it asks for the command
    try:
        command = server.command(port=8123)
        settings_file = command[command.index("--config_file") + 1]
        settings = json.loads(open(settings_file).read())
        template_file = command[command.index("--chat-template-file") + 1]
        assert open(template_file).read() == "{{ messages }}"
        assert stat.S_IMODE(os.stat(settings_file).st_mode) == 0o600
    finally:
        server._tmpdir.cleanup()
    assert not any(server.api_key in part for part in command)  # the key is in the private file only
    assert settings["api_key"] == server.api_key and settings["host"] == "127.0.0.1" and settings["port"] == 8123
    models = settings["models"]
    assert [m["model_alias"] for m in models] == ["base", "adapter-0", "adapter-1"]
    assert [m.get("lora_path") for m in models] == [None, str(adapters[0]), str(adapters[1])]
    assert {m["n_ctx"] for m in models} == {2048}  # one request at a time: one slot's share of the context
    assert {m["chat_format"] for m in models} == {"loraforge"}
    caps = server.capabilities
    assert caps.model == "base" and caps.adapter_models == ("adapter-0", "adapter-1") and not caps.llama_cpp


def test_an_unreachable_outside_server_points_at_the_url_not_the_model():
    from loraforge.errors import ServerError
    from loraforge.runtime.server import free_port

    server = ExternalServer(f"http://127.0.0.1:{free_port()}", startup_timeout=0.5)
    with pytest.raises(ServerError) as info:
        server.start()
    assert "--server-url" in info.value.fix and "check --deep" not in info.value.fix


def test_binary_server_key_is_private_and_not_on_the_command_line(tmp_path):
    binary, record = stub(tmp_path)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with BinaryServer(ServerConfig(model_path=model, llama_server=binary, startup_timeout=20)) as server:
        args = json.loads(record.read_text())
        key_file = args[args.index("--api-key-file") + 1]
        import os
        import stat

        assert open(key_file).read() == server.api_key
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert server.api_key and len(server.api_key) >= 24
    assert not any(server.api_key in a for a in args)
    other = BinaryServer(ServerConfig(model_path=model, llama_server=binary))
    assert other.api_key != server.api_key  # one key per server


def test_a_port_taken_before_the_server_binds_it_is_retried(tmp_path, monkeypatch):
    import socket

    from loraforge.runtime import server as server_module

    binary, _ = stub(tmp_path)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    ports = iter([taken, server_module.free_port()])
    monkeypatch.setattr(server_module, "free_port", lambda: next(ports))
    try:
        with BinaryServer(ServerConfig(model_path=model, llama_server=binary, startup_timeout=20)) as server:
            assert server.base_url.endswith(f":{taken}") is False
            assert urllib.request.urlopen(server.base_url + "/health").status == 200
    finally:
        squatter.close()


def test_a_server_that_fails_for_another_reason_is_not_retried(tmp_path, monkeypatch):
    from loraforge.runtime import server as server_module

    binary, record = stub(tmp_path, die=True)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    calls = []
    real = server_module.free_port
    monkeypatch.setattr(server_module, "free_port", lambda: calls.append(1) or real())
    with pytest.raises(ServerError, match="exited during start-up"):
        BinaryServer(ServerConfig(model_path=model, llama_server=binary, startup_timeout=20)).start()
    assert len(calls) == 1


def test_an_embedded_server_that_never_gets_healthy_is_stopped_before_the_error(tmp_path, monkeypatch):
    """The binding's server is replaced by one that listens nowhere (fault injection at the boundary):
    start-up fails, and the half-started server is released, not left running in the process."""
    import xllamacpp

    released, keys = [], []

    class NeverHealthy:
        def __init__(self, params):
            keys.append(list(params.api_keys))
            self.listening_address = "127.0.0.1:9"  # the discard port: nothing answers /health there

        def __del__(self):
            released.append(True)

    monkeypatch.setattr(xllamacpp, "Server", NeverHealthy)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    server = EmbeddedServer(ServerConfig(model_path=model, startup_timeout=0.5))
    with pytest.raises(ServerError):
        server.start()
    assert released and not server.alive()
    # the server was given this run's own key, which only loraforge's client holds
    assert keys == [[server.api_key]] and len(server.api_key) >= 24


def test_an_outside_server_is_let_go_not_stopped():
    """loraforge never stops a server it did not start: stopping one only forgets its address."""
    server = ExternalServer("http://127.0.0.1:9")
    server.base_url = server.url
    server.stop()
    server.stop()  # twice is safe
    assert server.base_url == ""
