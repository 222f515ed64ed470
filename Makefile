# Two commands on a fresh machine (Python 3.11+):
#   make serve   install and start the local stack on the shipped model
#   make test    install everything the tests need and run them
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: install serve test test-deps bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e ".[dev]"
	touch $@

serve: install
	$(VENV)/bin/skinscan serve

# Browser and infra checks need Chromium and the osls packager; install them when we can.
test-deps: install
	@bash infra/install-test-deps.sh

# The dependency audit runs first, so pytest's summary is the last thing printed.
test: test-deps
	bash infra/audit.sh
	$(PY) -m pytest

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .serverless infra/node_modules
