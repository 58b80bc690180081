# The two commands a fresh clone needs: `make run` and `make test`.
# Both create .venv and install exactly the versions pinned (with hashes) in requirements/*.lock,
# so a fresh clone runs what CI tested; then fetch the Kafka jars (cached under ~/.cache/parley,
# Maven's own cache under ~/.m2, pip's under ~/.cache/pip: never in the repo).
# `make lock` regenerates the locks from pyproject.toml's ranges; `make test-latest` tries the
# newest versions those ranges allow (a deliberate upgrade, never part of CI).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
RUNTIME_LOCK = requirements/runtime.lock
LOCK    = requirements/test.lock
BENCH_LOCK = requirements/bench.lock
UV_VERSION = 0.13.9
PYTEST_ARGS ?=

.PHONY: run test fuzz test-quick test-latest lint install lock kafka-jars browser bench bench-deps clean

install: $(STAMP)

# --require-hashes: every package, build tools included, is the exact file that was locked.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) requirements/check.py $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check --disable-pip-version-check >/dev/null
	@touch $(STAMP)

# Regenerate the three locks from pyproject.toml (and requirements/build.in) for Python 3.11+ on
# every platform: bench (make bench) is resolved first, as the widest; test (make run / make test)
# is constrained by it and runtime (the container image) by test, so the packages they share are
# the same versions everywhere.
lock:
	$(PYTHON) -m venv .venv-uv
	.venv-uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	.venv-uv/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		pyproject.toml requirements/build.in --extra test --extra bench -o $(BENCH_LOCK)
	.venv-uv/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		pyproject.toml requirements/build.in --extra test -c $(BENCH_LOCK) -o $(LOCK)
	.venv-uv/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
		pyproject.toml requirements/build.in -c $(LOCK) -o $(RUNTIME_LOCK)
	@echo "locks written: $(RUNTIME_LOCK) $(LOCK) $(BENCH_LOCK) (review the diff, run make test, commit)"

# The newest versions pyproject.toml's ranges allow, in a venv of their own, then the whole
# suite: how an upgrade is tried before `make lock` makes it the project's. Not run by CI.
test-latest: kafka-jars
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --disable-pip-version-check --upgrade -e '.[test]'
	.venv-latest/bin/pip freeze --exclude-editable
	.venv-latest/bin/ruff check .
	.venv-latest/bin/mypy
	.venv-latest/bin/pytest $(PYTEST_ARGS)

bench-deps: $(STAMP)
	@$(PYTHON) requirements/check.py $(BENCH_LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(BENCH_LOCK)

kafka-jars: $(STAMP)
	@$(BIN)/python -c 'from parley.kafka.jars import main; raise SystemExit(main())'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The console's browser tests (tests/console) drive Debian's Chromium through Playwright:
# installed here where absent (as root, with apt-get); where it cannot be, this stops `make test`
# with one line saying so, rather than letting those tests pass or skip unseen.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Chromium for the console's browser tests (apt-get install -y chromium)"; \
	    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	  fi; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "ERROR: no Chromium: the console's browser tests (tests/console) need it. Install it (Debian: sudo apt-get install -y chromium) and run make test again." >&2; exit 1; }

# The whole suite: lint, strict typing, unit, browser and real-Kafka integration tests.
test: kafka-jars browser lint
	$(BIN)/pytest $(PYTEST_ARGS)

# Quick local loop: skips tests marked slow (CI always runs everything).
test-quick: kafka-jars browser
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
	rm -rf $(VENV) .venv-uv .venv-latest .parley .pytest_cache .mypy_cache .ruff_cache

# A longer fuzzing campaign (tests/system/test_fuzz.py) than `make test` runs: local only.
FUZZ_EXAMPLES ?= 20000
fuzz: kafka-jars
	PARLEY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/system/test_fuzz.py -s -p no:randomly --timeout=0 $(PYTEST_ARGS)
