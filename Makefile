# One entry point for set-up, the local run and the tests. Every target installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup browser run test lint bench bench-audit soak clean

setup: $(STAMP) node_modules/.package-lock.json

# The headless browser the dashboard's tests drive: Debian's chromium and its driver, installed once
# (nothing is done when both are already on the PATH).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver >/dev/null; }

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --editable .
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

## run: process the sample customer-onboarded messages against the local sandbox and show the ledger
run: setup
	$(PY) -m sandbox.programs.demo $(ARGS)

## test: lint, type-check and run the whole test suite (starts and stops its own local services)
test: setup browser lint
	$(PY) -m pytest -n auto --maxprocesses 4

## bench: re-verify 10,000 links with 50 ms latency and print the figures (not part of the tests)
bench: setup
	$(PY) -m bench.reverify_bench $(ARGS)

## bench-audit: the attribution audit of one large tenant (20 environments, 2,000 apps and flows) at 50 ms
bench-audit: setup
	$(PY) -m bench.audit_bench $(ARGS)

## soak: 5,000 onboarding messages under faults, a Table Storage outage and a host restart; prints figures
soak: setup
	$(PY) -m sandbox.programs.soak $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .sandbox
