# Two commands on a fresh machine (Python 3.11+):
#   make serve   install what serving needs (.[serve,web,bot]: no TensorFlow) and start the local stack
#   make test    install everything (.[dev]) and run the whole suite (what CI runs)
# and, while working:
#   make check   the fast tier: ruff, mypy, and the unit and contract tests on a fake backend (no TensorFlow)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: install install-dev serve check test test-deps bench bench-train translations clean

# One venv; each stamp records which extras are in it (pyproject.toml changes reinstall them).
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip

$(VENV)/.installed-serve: pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) -e ".[serve,web,bot]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) -e ".[dev]"
	touch $@ $(VENV)/.installed-serve

install: $(VENV)/.installed-serve

install-dev: $(VENV)/.installed-dev

serve: install
	$(VENV)/bin/skinscan serve

# Browser and infra checks need Chromium and the osls packager; install them when we can.
test-deps: install-dev
	@bash infra/install-test-deps.sh

# The fast tier: ruff and mypy (configured in pyproject.toml), then the tests without slow marks;
# conftest fails the run if TensorFlow is imported.
check: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	SKINSCAN_FAST_TIER=1 $(PY) -m pytest -q -m "not slow"

# The dependency audit runs first, so pytest's summary is the last thing printed.
test: test-deps
	bash infra/audit.sh
	$(PY) -m pytest

# Serving (the fast path against plain Keras), then training speed (the PyTorch trainer's step against a
# Keras-on-TensorFlow step). Run them on idle cores: both print a warning when other work shared the machine.
bench: install-dev
	$(PY) bench/run.py
	$(PY) bench/train.py

bench-train: install-dev
	$(PY) bench/train.py

# After changing a user-facing text: refresh the template and every language's catalog, then
# translate the new or fuzzy entries (tests/test_i18n.py fails until each language is complete).
# Nothing to compile: skinscan.i18n compiles each .po in memory on first use.
LOCALES := shared/skinscan/locales
translations: install-dev
	$(VENV)/bin/pybabel extract -F babel.cfg --no-location --sort-by-file --width 100 \
		-k N_plural:1,2 --project skinscan --copyright-holder "skinscan authors" -o $(LOCALES)/skinscan.pot .
	$(VENV)/bin/pybabel update -i $(LOCALES)/skinscan.pot -d $(LOCALES) -D skinscan --width 100 --ignore-obsolete

clean:
	rm -rf $(VENV) .pytest_cache .serverless infra/node_modules
