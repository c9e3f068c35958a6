# Baysense: `make demo` runs the main job on a virtual fleet, `make test` runs the test suite.
# Both create .venv and install the pinned dependencies first when needed.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found: install Python 3.11 or run 'make PYTHON=python3.12'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(BIN)/baysense demo

test: setup
	$(BIN)/python -m pytest tests

bench: setup
	$(BIN)/python tools/bench.py

clean:
	rm -rf $(VENV) build *.egg-info host/*.egg-info .pytest_cache
