# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench cases samples clean

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
# tests/e2e/test_report_html.py renders the HTML report in headless Chromium (Debian's package; run as root)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(BIN)/pytest -q

bench: $(BIN)/tracekit
	$(BIN)/python tests/bench/ingest.py
	$(BIN)/python tests/bench/lab.py
	$(BIN)/python tests/bench/analyze.py
	$(BIN)/python tests/bench/collect.py
	$(BIN)/python tests/bench/replay.py

# Regenerate samples/lab/ from the shipped scenarios, so samples and their truth never drift.
samples: $(BIN)/tracekit
	rm -rf samples/lab
	for s in samples/scenarios/*.toml; do \
		$(BIN)/tracekit lab run "$$s" --out "samples/lab/$$(basename "$$s" .toml)" --seed 1 -f json || exit 1; \
	done

cases: $(BIN)/tracekit
	$(BIN)/python ../shared/cases/run_cases.py --tracekit $(BIN)/tracekit

clean:
	rm -rf $(VENV) .tracekit .pytest_cache
