# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Each creates .venv with the CPU build of torch (scripts/setup.sh) when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test clean-venv

$(STAMP): pyproject.toml scripts/setup.sh
	python3 -m venv $(VENV)
	PYTHON=$(PY) bash scripts/setup.sh
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stethoscope demo --out demo

test: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider

clean-venv:
	rm -rf $(VENV)
