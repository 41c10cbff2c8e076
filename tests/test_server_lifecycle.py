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
    with pytest.raises(ServerError, match="exited during start-up"):
        BinaryServer(ServerConfig(model_path=model, llama_server=binary, startup_timeout=20)).start()


def test_llama_cpp_path_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "build" / "bin").mkdir(parents=True)
    binary, _ = stub(tmp_path / "build" / "bin")
    monkeypatch.setenv("LLAMA_CPP_PATH", str(tmp_path))
    assert ServerConfig(model_path=tmp_path / "m.gguf").llama_server == binary


def test_server_kind_is_chosen_from_the_config(tmp_path, monkeypatch):
    monkeypatch.delenv("LLAMA_CPP_PATH", raising=False)
    assert isinstance(make_server(ServerConfig(server_url="http://127.0.0.1:1")), ExternalServer)
    assert isinstance(make_server(ServerConfig(model_path=tmp_path / "m.gguf")), EmbeddedServer)


def test_an_unreachable_outside_server_points_at_the_url_not_the_model():
    from loraforge.errors import ServerError
    from loraforge.runtime.server import free_port

    server = ExternalServer(f"http://127.0.0.1:{free_port()}", startup_timeout=0.5)
    with pytest.raises(ServerError) as info:
        server.start()
    assert "--server-url" in info.value.fix and "check --deep" not in info.value.fix
