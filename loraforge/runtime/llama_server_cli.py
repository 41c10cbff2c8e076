"""llama.cpp's server from the xllamacpp wheel as its own process, with llama-server's flags.

    python -m loraforge.runtime.llama_server_cli -m model.gguf --host 127.0.0.1 --port 8080 [--lora a.gguf] ...

It lets loraforge run the engine out of process (a crash or a kill does not take loraforge down) where
no llama-server binary is installed; `--llama-server` can point at it through a one-line wrapper.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loraforge-serve")
    parser.add_argument("-m", "--model", required=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("-c", "--ctx-size", type=int, default=4096)
    parser.add_argument("-np", "--parallel", type=int, default=1)
    parser.add_argument("-t", "--threads", type=int, default=0)
    parser.add_argument("--cache-ram", type=int, default=0)
    parser.add_argument("--jinja", action="store_true")
    parser.add_argument("--chat-template-file")
    parser.add_argument("--lora", action="append", default=[])
    parser.add_argument("--lora-init-without-apply", action="store_true")
    parser.add_argument("--api-key", action="append", default=[])
    parser.add_argument("--api-key-file")
    parser.add_argument("--version", action="store_true")
    args = parser.parse_args(argv)

    import xllamacpp

    if args.version:
        print(f"version: xllamacpp {xllamacpp.__version__} (loraforge serve)")
        return 0
    if not args.model:
        parser.error("-m/--model is required")
    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    if args.threads > 0:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    params.hostnames = [args.host]
    params.port = args.port
    params.cache_ram_mib = args.cache_ram
    params.use_jinja = args.jinja or bool(args.chat_template_file)
    params.verbosity = 0
    keys = list(args.api_key)
    if args.api_key_file:  # one key per line, as llama-server reads it
        lines = Path(args.api_key_file).read_text(encoding="utf-8").splitlines()
        keys += [line.strip() for line in lines if line.strip()]
    if keys:
        params.api_keys = keys
    if args.chat_template_file:
        params.chat_template = Path(args.chat_template_file).read_text(encoding="utf-8")
    if args.lora:
        params.lora_adapters = [
            xllamacpp.CommonAdapterLoraInfo(path, 0.0 if args.lora_init_without_apply else 1.0) for path in args.lora
        ]
        params.lora_init_without_apply = args.lora_init_without_apply
    server = xllamacpp.Server(params)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
