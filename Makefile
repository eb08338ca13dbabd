# One-purpose targets; `make check` is what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint fmt check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/pytest --cov=webhook --cov-report=term -q

lint: install
	$(BIN)/ruff format --check webhook tests
	$(BIN)/ruff check webhook tests
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format webhook tests
	$(BIN)/ruff check --fix webhook tests

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage htmlcov *.egg-info
