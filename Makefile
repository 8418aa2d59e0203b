# procexec: `make run` installs and starts the service; `make test` installs and runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test check lint typecheck pytest format install install-test clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "procexec needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## Start the whole service (API, worker, beat) on the embedded store and broker.
run: install
	$(BIN)/procexec standalone --host $(HOST) --port $(PORT)

## Lint, type-check and run the whole test suite.
test: install-test lint typecheck pytest
check: test

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## mypy reads the installed layout (procexec.engine, …) from src/, whose procexec/ links to the
## parts: it cannot follow pyproject.toml's package-dir mapping, nor an editable install's hook.
typecheck: install-test
	$(BIN)/mypy

## Two pytest-xdist workers, each taking whole test files, the slowest first (tests/conftest.py's
## SLOW_FIRST); `PYTEST_WORKERS=0`: one process.
PYTEST_WORKERS ?= 2
pytest: install-test
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .procexec .mypy-tree .pytest_cache .mypy_cache .ruff_cache *.egg-info
