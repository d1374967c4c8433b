# Two commands for a newcomer: `make run` (the embedded hub) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
# Where `make run` serves the pages: make run BIND=0.0.0.0:8000
BIND ?= 127.0.0.1:8000
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Tests keep their data (SQLite file, filesystem broker) apart from a running hub's.
PYTEST := DEBUG=$${DEBUG:-true} HUB_DATA_DIR=$${HUB_DATA_DIR:-$(CURDIR)/.hub/test} $(PY) -m pytest

.PHONY: run test test-unit test-integration test-browser chromium clean bench-logs bench-tickets bench-billing

$(VENV)/.run-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[test]"
	touch $@ $(VENV)/.run-installed

# Embedded default: SQLite, filesystem broker and file cache under .hub/; web + worker + beat.
run: $(VENV)/.run-installed
	DEBUG=$${DEBUG:-true} $(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-true} HUB_BASE_URL=$${HUB_BASE_URL:-http://$(BIND)} $(PY) manage.py bootstrap_admin
	DEBUG=$${DEBUG:-true} $(PY) manage.py runhub --bind $(BIND)

# Browser tests drive Debian's /usr/bin/chromium; install it when it is missing.
chromium:
	@[ -x /usr/bin/chromium ] || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The whole suite: PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set, embedded otherwise.
test: $(VENV)/.test-installed chromium
	$(PYTEST) tests

test-unit: $(VENV)/.test-installed
	$(PYTEST) tests/unit tests/test_architecture.py

test-integration: $(VENV)/.test-installed
	$(PYTEST) tests/integration

test-browser: $(VENV)/.test-installed chromium
	$(PYTEST) tests/browser

# The logs page with a million log rows in PostgreSQL: p50/p95 per filter, first page and page 50,
# table and index sizes, a retention sweep. BENCH_ARGS="--fresh --repeat 50 --explain" to vary it.
BENCH_LOGS_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/hub_bench_logs
bench-logs: $(VENV)/.run-installed
	DATABASE_URL=$(BENCH_LOGS_DATABASE_URL) DEBUG=$${DEBUG:-true} HUB_DATA_DIR=$${HUB_DATA_DIR:-$(CURDIR)/.hub/bench} \
	  $(PY) manage.py bench_logs $(BENCH_ARGS)

# Incidents through the API into the ConnectWise fake (+100 ms) with a real worker: accept rate,
# accept -> ticket p50/p95/p99, tickets == incidents, no duplicates; then with the worker killed
# (kill -9) twice. Prints figures. PostgreSQL + Redis when DATABASE_URL / REDIS_URL are set, else
# embedded in a temporary folder. BENCH_TICKETS_ARGS="--incidents 500 --phases clean" to vary it.
bench-tickets: $(VENV)/.test-installed
	$(PY) -m tests.bench.bench_tickets $(BENCH_TICKETS_ARGS)

# Billing sync of 2,000 mapped tenants into each vendor's fake (+100 ms per answer): wall time of a
# first sync and of an unchanged re-sync, PSA reads/writes per tenant, every quantity checked in the
# fake. PostgreSQL + Redis when DATABASE_URL / REDIS_URL are set, else embedded in a temporary folder.
# BENCH_BILLING_ARGS="--tenants 200 --vendors connectwise" to vary it.
bench-billing: $(VENV)/.test-installed
	$(PY) -m tests.bench.bench_billing $(BENCH_BILLING_ARGS)

clean:
	rm -rf $(VENV) .hub staticfiles
