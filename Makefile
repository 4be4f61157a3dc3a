# Two commands: `make run` (the main job on the demo data) and `make test` (lint, layer
# contract, tests).
# Both create or refresh .venv first; a stamp file makes that a no-op when nothing changed.
# `make test` also makes sure Chromium is installed (`make browser`, for the browser tests)
# and Mosquitto (`make broker`, for the MQTT tests).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-stamp

.PHONY: venv browser broker run demo-live test lint bench docs-local docs-baseline clean-outputs

venv: $(STAMP)

$(STAMP): requirements.txt requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -c requirements.lock
	@touch $(STAMP)

# Debian's chromium for tests/test_dashboard_browser.py: installed with apt-get when running
# as root, otherwise this fails with the one command to run.
browser:
	@bash scripts/ensure_chromium.sh

# Debian's mosquitto for tests/test_live_mqtt.py (each test starts its own broker): installed
# with apt-get when running as root, otherwise this fails with the one command to run.
broker:
	@bash scripts/ensure_mosquitto.sh

run: venv
	$(PY) -m pipelines.run_main_job

# After `make run`: the demo models watch a replayed TEP fault run and a vibration fault
# file live, with the dashboard's Live tab on http://127.0.0.1:8765 (Ctrl-C stops).
demo-live: venv
	$(PY) -m pipelines.run_live_demo --keep-open

test: venv browser broker
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
	  artifacts/runtime_configs artifacts/scaler_fdc.json artifacts/live artifacts/onnx \
	  training_dashboard/data/runs training_dashboard/data/dashboard-state.json
