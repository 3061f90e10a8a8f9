# Two entry points for a fresh machine (python3 >= 3.11, make, git):
#   make serve   install memtrace into .venv and start the server on 127.0.0.1:9100
#   make test    install the test dependencies into .venv and run the test suite
#   make test-fast   the fast tier: no processes or servers, under a minute (docs/testing.md)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test test-fast lint ci bench bench-quick profile-tools dist wheelhouse image clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files re-run the install only when pyproject.toml changes. The distribution was called
# `memtrace` before 0.3.0 became `memtrace-server`: drop the old name so a venv holds one copy.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@$(BIN)/pip uninstall --quiet --yes memtrace 2>/dev/null || true
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@$(BIN)/pip uninstall --quiet --yes memtrace 2>/dev/null || true
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

serve: $(VENV)/.installed
	$(BIN)/memtrace serve $(ARGS)

# Tests run in parallel (pytest-xdist): most of their time is spent waiting on processes and
# sockets, so 4 workers beat 2 on a 2-core machine (docs/testing.md has the figures).
TEST_WORKERS ?= 4

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(ARGS)

# The fast tier waits on threads and in-process servers too: on a quiet 2-core machine 3 workers
# took 54 s, 2 took 64 s and 4 took 59 s (docs/testing.md).
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not slow" -n 3 $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

ci: test lint

# The benchmark suite (bench/README.md): full run ~10 min, --quick under 2 min.
bench: $(VENV)/.installed
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: $(VENV)/.installed
	$(BIN)/python -m bench.run --quick $(ARGS)

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# Profilers (py-spy, pyinstrument) for the optimisation work described in bench/README.md.
profile-tools: $(VENV)/.installed-bench

# Packaging and images (docs/deploy.md). `make dist`: the wheel and the sdist in dist/.
# `make wheelhouse`: dist/wheelhouse/ holds the wheel and every dependency, so `make image`
# builds with no network inside the build (CONTAINER=podman also works; BASE picks the base image).
dist: $(VENV)/.installed-dev
	rm -rf dist build
	$(BIN)/python -m build --outdir dist .

wheelhouse: dist
	$(BIN)/python -m pip wheel --quiet --wheel-dir dist/wheelhouse dist/*.whl

CONTAINER ?= docker
BASE      ?= python:3.11-slim-bookworm
image: wheelhouse
	$(CONTAINER) build $(if $(filter podman,$(CONTAINER)),--format docker) --network=none --build-arg BASE=$(BASE) -t memtrace:$(shell $(BIN)/python -c 'import memtrace; print(memtrace.__version__)') -t memtrace:latest .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build
