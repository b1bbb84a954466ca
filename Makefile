# The verbs the README uses. Everything runs from a virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check lint types bench clean

$(BIN)/tidings: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

## run: install and start Tidings (API on :8080, SQLite in ./tidings.db, email to the outbox)
run: $(BIN)/tidings
	$(BIN)/tidings serve

## test: install, make sure the test services are there, lint, type-check and run every test
test: $(BIN)/tidings
	scripts/test-services
	npm ci --prefix tests/peers/smsc --no-audit --no-fund --silent
	$(MAKE) check
	$(BIN)/pytest

check: lint types

lint: $(BIN)/tidings
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

types: $(BIN)/tidings
	$(BIN)/mypy

## bench: the benchmarks (see BENCHMARKS.md)
bench: $(BIN)/tidings
	scripts/test-services --bench
	$(BIN)/python bench/run.py
	$(BIN)/python bench/push.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
