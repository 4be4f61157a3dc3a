# Two commands: `make run` (the main job on the demo data) and `make test` (lint, layer
# contract, tests).
# Both create or refresh .venv first; a stamp file makes that a no-op when nothing changed.
# `make test` also makes sure Chromium is installed (`make browser`, for the browser tests).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-stamp

.PHONY: venv browser run test lint bench docs-local docs-baseline clean-outputs

venv: $(STAMP)

$(STAMP): requirements.txt requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -c requirements.lock
	@touch $(STAMP)

# Debian's chromium for tests/test_dashboard_browser.py: installed with apt-get when running
# as root, otherwise this fails with the one command to run.
browser:
	@bash scripts/ensure_chromium.sh

run: venv
	$(PY) -m pipelines.run_main_job

test: venv browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

docs-local:
	$(PYTHON) scripts/switch_docs.py local

docs-baseline:
	$(PYTHON) scripts/switch_docs.py baseline

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean-outputs:
	rm -rf checkpoints runs artifacts/dqvl artifacts/loss artifacts/cache artifacts/pipeline \
	  artifacts/validation artifacts/decisions artifacts/calibration artifacts/bundles \
	  artifacts/runtime_configs artifacts/scaler_fdc.json training_dashboard/data/runs \
	  training_dashboard/data/dashboard-state.json
