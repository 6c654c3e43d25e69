# Portico: `make run` starts everything; `make test` runs the whole suite.
# Both install what is missing first and reuse what is already installed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
VENDOR := app/static/vendor/htmx.min.js
CHROMIUM ?= $(or $(PLAYWRIGHT_CHROMIUM_EXECUTABLE),/usr/bin/chromium)

.PHONY: run test bench chaos install browser lint format clean

run: install
	PORTICO_ENV=$${PORTICO_ENV:-development} $(PY) -m app.devserver

test: install browser
	$(BIN)/ruff check app tests e2e bench
	$(BIN)/ruff format --check app tests e2e bench
	PORTICO_ENV=test PLAYWRIGHT_CHROMIUM_EXECUTABLE=$(CHROMIUM) $(BIN)/pytest tests e2e

# Every benchmark in bench/ against the local PostgreSQL and Redis (embedded ones when
# they don't answer); rewrites the results in docs/benchmarks.md and the README.
bench: install browser
	PLAYWRIGHT_CHROMIUM_EXECUTABLE=$(CHROMIUM) $(PY) bench/suite.py $(BENCH_ARGS)

# Billing and dunning runs with workers SIGKILLed and Redis crashed on purpose, against a
# private Redis and database; checks exactly-once, writes docs/reliability.md, and fails
# when a check does.
chaos: install
	$(PY) bench/chaos.py $(CHAOS_ARGS)

install: $(STAMP_PY) $(VENDOR)

$(STAMP_PY): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Portico needs Python 3.11 or newer ($(PYTHON) is older)."; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(STAMP_NPM): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENDOR): $(STAMP_NPM)
	mkdir -p app/static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js app/static/vendor/htmx.min.js

browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "Installing Chromium for the browser tests (apt-get)…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

lint: install
	$(BIN)/ruff check app tests e2e bench
	$(BIN)/ruff format --check app tests e2e bench

format: install
	$(BIN)/ruff check --fix app tests e2e bench
	$(BIN)/ruff format app tests e2e bench

clean:
	rm -rf $(VENV) node_modules app/static/vendor instance
