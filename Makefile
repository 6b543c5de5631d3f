# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench cases clean

$(BIN)/tracekit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/tracekit

demo: $(BIN)/tracekit
	$(BIN)/tracekit demo

test: $(BIN)/tracekit
	$(BIN)/ruff check tracekit tests
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: $(BIN)/tracekit
	$(BIN)/python tests/bench/ingest.py

cases: $(BIN)/tracekit
	$(BIN)/python ../shared/cases/run_cases.py --tracekit $(BIN)/tracekit

clean:
	rm -rf $(VENV) .tracekit .pytest_cache
