# Two commands for a newcomer: `make run` (the embedded hub) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
# Where `make run` serves the pages: make run BIND=0.0.0.0:8000
BIND ?= 127.0.0.1:8000
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Tests keep their data (SQLite file, filesystem broker) apart from a running hub's.
PYTEST := DEBUG=$${DEBUG:-true} HUB_DATA_DIR=$${HUB_DATA_DIR:-$(CURDIR)/.hub/test} $(PY) -m pytest

.PHONY: run test test-unit test-integration test-browser chromium clean

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

clean:
	rm -rf $(VENV) .hub staticfiles
