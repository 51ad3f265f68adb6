# The two commands of the README: `make run` (the whole pipeline with a demo feed) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install system-deps test-deps run stack-up stack-down test test-unit lint typecheck schemas check bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

system-deps:
	./scripts/install-system-deps.sh

# The tests also drive Chromium (browser tests) and check the Prometheus config with promtool; a run needs
# neither.
test-deps:
	./scripts/install-system-deps.sh --browser
	./scripts/fetch-promtool.sh

run: install system-deps
	$(BIN)/cme run

stack-up: install system-deps
	$(BIN)/cme stack up

stack-down: install
	$(BIN)/cme stack down

# Everything the tests need is installed and started by the tests themselves (Kafka, PostgreSQL).
test: install test-deps
	$(BIN)/cme kafka-fetch
	$(BIN)/cme schemas check
	$(BIN)/pytest -q -p no:cacheprovider
	$(MAKE) lint typecheck

test-unit: install
	$(BIN)/pytest -q tests/unit

lint: install
	$(BIN)/ruff check shared services devtools tests bench

typecheck: install
	$(BIN)/mypy shared services devtools tests bench

schemas: install
	$(BIN)/cme schemas export

# Starts the tests' broker and PostgreSQL itself when CME_KAFKA_BOOTSTRAP / CME_BENCH_DATABASE_URL are not set.
bench: install system-deps
	$(BIN)/cme kafka-fetch
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .cache var .mypy_cache .ruff_cache
