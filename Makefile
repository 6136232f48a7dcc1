# `make demo` runs the hub with simulated sensors; `make test` runs every check. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest bench system clean

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

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
