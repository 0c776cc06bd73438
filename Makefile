# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite);
# `make lint` (ruff and mypy) is what CI runs before the suite.
# Each creates .venv with the CPU build of torch (scripts/setup.sh) when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean-venv

$(STAMP): pyproject.toml scripts/setup.sh
	python3 -m venv $(VENV)
	PYTHON=$(PY) bash scripts/setup.sh
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stethoscope demo --out demo

test: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider

# ruff (lint, then formatting) and mypy, with the settings in pyproject.toml
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy src/stethoscope

clean-venv:
	rm -rf $(VENV)
