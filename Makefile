# Baton — one command away.  `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export BATON_HOME := $(CURDIR)
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)/dev$(if $(PYTHONPATH),:$(PYTHONPATH))
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins

.DEFAULT_GOAL := help
.PHONY: help install demo test test-fast fuzz lint docs bench constraints db-stop clean browser

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-celery.txt requirements-dev.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Baton needs Python 3.11 or newer (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the pinned requirements (development, tests and the CeleryExecutor)

demo: $(STAMP) ## seed 10,000 customers, run the campaigns through a real Airflow scheduler, print the numbers, keep the UI up
	$(BIN)/python -m baton_dev.demo

# The browser tests drive Debian's chromium through its chromedriver (browser downloads are not possible
# everywhere, so no Playwright/Selenium Manager browser): installed from apt when missing and root.
BROWSER := /usr/bin/chromium /usr/bin/chromedriver

$(BROWSER):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium and chromium-driver for the browser tests"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; \
	else \
	  echo "the browser tests need Debian's chromium and chromium-driver: sudo apt-get install chromium chromium-driver" >&2; \
	  exit 1; \
	fi

browser: $(BROWSER) ## install Debian's chromium and chromedriver for the browser tests (make test does it)

test: $(STAMP) $(BROWSER) ## run the whole test suite (unit, dags, integration) on the embedded Postgres
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP) ## unit tests only (no database, no Airflow)
	$(BIN)/python -m pytest -q -m unit $(PYTEST_ARGS)

fuzz: $(STAMP) ## fuzz the campaign/policy loaders, DAG files, scenario and identifier loaders and every web route with thousands of examples (~15 min)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -m fuzz $(PYTEST_ARGS)

lint: $(STAMP) ## ruff and mypy (strict on include/baton)
	$(BIN)/ruff check include dev dags plugins tests bench
	$(BIN)/ruff format --check include dev dags plugins tests bench
	$(BIN)/mypy

docs: $(STAMP) ## regenerate docs/ (campaign and policy YAML, outcomes, CLI) from the code
	$(BIN)/python -m baton_dev.docs

bench: $(STAMP) ## benchmarks that print their figures (see README)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

constraints: ## re-pin constraints.txt from the current .venv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' | sort -f > constraints.txt

db-stop: ## stop the embedded PostgreSQL
	-$(BIN)/baton db stop

clean: db-stop ## stop the embedded PostgreSQL and delete .baton/ (all local data)
	rm -rf .baton
