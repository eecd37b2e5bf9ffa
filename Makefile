# LLM Studio. Quick start: `make run` (install + studio up), `make test` (install + pytest).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-all lint i18n bench screenshots clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python scripts/i18n.py compile
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/studio up

test: install
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m "not gpu or gpu"

lint: install
	$(BIN)/ruff check backend studio tests bench scripts
	$(BIN)/lint-imports
	$(BIN)/mypy backend

i18n: install
	$(BIN)/python scripts/i18n.py all

bench: install
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

screenshots: install
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
