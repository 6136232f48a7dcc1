# `make demo` runs the hub with simulated sensors; `make test` runs every check. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest bench faults system clean bench-report

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

system:
	./scripts/ensure-system-packages

demo: $(STAMP) system
	$(BIN)/hub demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy devices ingest alerts video hub

pytest: $(STAMP)
	./scripts/ensure-system-packages test
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP) system
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/onboarding.py
	$(BIN)/python bench/alerts.py
	$(BIN)/python bench/feed.py
	$(BIN)/python bench/video.py
	$(BIN)/python bench/influx.py
	$(BIN)/python bench/sources.py
	$(BIN)/python bench/scaleout.py

# The fault suite (issue 10): its tests, then its figures. Needs root (it mounts tmpfs disks to fill).
faults: $(STAMP) system
	./scripts/ensure-system-packages test
	$(BIN)/pytest -q tests/faults
	$(BIN)/python bench/faults.py

# One run, all systems side by side (issue 9): the hub against mosquitto_sub, a paho counter and
# Node-RED (npm, cached in ~/.cache/hub-bench); writes bench/results/report.md and report.png.
bench-report: $(STAMP) system
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/report.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
