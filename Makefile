# Customer 360 pipeline. A fresh machine needs only Python 3.11: `make demo`, `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# uv comes from PyPI into a private tools venv when it is not on the PATH.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never
export RUST_LOG ?= warn
export PYTHONWARNINGS ?= ignore::FutureWarning

.PHONY: help setup demo test test-fast lint clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python 3.11
	@touch $@

setup: .venv/.synced  ## install the locked environment into .venv

demo: setup  ## generate a 10,000-customer bank into ./landing and run every step into ./lake
	$(UV) run --frozen c360 demo

test: setup  ## run the test suite
	$(UV) run --frozen pytest -q

test-fast: setup  ## the tests without the end-to-end ones
	$(UV) run --frozen pytest -q -m "not slow"

clean:  ## remove generated data (landing, lake, reports); keeps the environment
	rm -rf landing lake mlruns
