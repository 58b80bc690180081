# The two commands a fresh clone needs: `make run` and `make test`.
# Both create .venv, install Parley with its test tools, and fetch the Kafka jars (cached under
# ~/.cache/parley, Maven's own cache under ~/.m2, pip's under ~/.cache/pip: never in the repo).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test test-quick lint install kafka-jars bench bench-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Parley needs Python 3.11+ (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Benchmarks compare against pydantic, Quix Streams and faust-streaming: installed on demand.
bench-deps: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'

kafka-jars: $(STAMP)
	@$(BIN)/python -c 'from parley.kafka import resolve_jars; print("Kafka jars:", resolve_jars())'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The whole suite: lint, strict typing, unit and real-Kafka integration tests.
test: kafka-jars lint
	$(BIN)/pytest $(PYTEST_ARGS)

# Quick local loop: skips tests marked slow (CI always runs everything).
test-quick: kafka-jars
	$(BIN)/pytest -m 'not slow' $(PYTEST_ARGS)

run: kafka-jars
	$(BIN)/parley run

bench: kafka-jars bench-deps
	$(BIN)/python bench/kafka_startup.py
	$(BIN)/python bench/decode.py
	$(BIN)/python bench/receiver.py
	$(BIN)/python bench/consumers.py
	$(BIN)/python bench/replay.py

clean:
	rm -rf $(VENV) .parley .pytest_cache .mypy_cache .ruff_cache
