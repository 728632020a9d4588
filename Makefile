# ticktape — set-up, demo and tests. Every target builds the virtual environment first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean browser crosscheck

# torch is pinned and installed first: a plain `torch` requirement would pull a CUDA build.
$(STAMP): pyproject.toml setup.py simulator/features/_native.c simulator/models/_step.c \
		simulator/importers/_book.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

# The fill cross-check's reference, hftbacktest 2.4.4, pins numpy<2.3: it gets a venv of its
# own (the tests run it in a subprocess). tests/crosscheck/test_hftbacktest_fills.py.
XVENV := .venv-crosscheck
$(XVENV)/.installed:
	$(PYTHON) -m venv $(XVENV)
	$(XVENV)/bin/pip install --quiet hftbacktest==2.4.4
	touch $@

crosscheck: $(STAMP) $(XVENV)/.installed
	$(BIN)/pytest -q -m slow tests/crosscheck

demo: $(STAMP)
	$(BIN)/ticktape data ls
	$(BIN)/ticktape replay nasdaq/GOOG/2012-06-21 --strategy obi_mlp

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian's Chromium for the report's browser tests; playwright drives it (never `playwright install`).
browser:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

test: lint typecheck browser
	$(BIN)/pytest -q
	$(BIN)/pytest -q -m "property"

bench: $(STAMP)
	$(BIN)/python benchmarks/source_bench.py
	$(BIN)/python benchmarks/runner_bench.py
	$(BIN)/ticktape bench

clean:
	rm -rf $(VENV) $(XVENV) .mypy_cache .ruff_cache .pytest_cache
