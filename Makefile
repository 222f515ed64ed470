# Two commands on a fresh machine (Python 3.11+):
#   make serve   install what serving needs (.[serve,web,bot]: no TensorFlow) and start the local stack
#   make test    install everything (.[dev]) and run the whole suite (what CI runs)
# and, while working:
#   make check   the fast tier: ruff, mypy, and the unit and contract tests on a fake backend (no TensorFlow)
#   make lock    after changing a dependency: refresh uv.lock and the hashed requirements/*.txt
# Both installs come from the lock, every package checked against its hash.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: install install-dev serve check test test-deps bench bench-memory bench-train lock translations clean

# One venv; each stamp records which lock is installed in it (a refreshed lock reinstalls).
# Every install comes from the lock: requirements/*.txt (exported from uv.lock by `make lock`) pin
# each package with its hashes, and pip refuses any file whose hash differs; then skinscan itself,
# editable and without dependencies, so nothing unlocked comes in.
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip

$(VENV)/.installed-serve: requirements/serve.txt | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) --require-hashes -r requirements/serve.txt
	$(PY) -m pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements/dev.txt | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) --require-hashes -r requirements/dev.txt
	$(PY) -m pip install $(PIP_FLAGS) --no-deps -e .
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

# Memory and time per request for the costliest uploads (issue 19's goals), and what the
# decode limits mean in megapixels.
bench-memory: install-dev
	$(PY) bench/memory.py
	$(PY) bench/memory.py --limits

# After changing a dependency in pyproject.toml: resolve every extra again (uv.lock) and export
# the hashed requirements each install path uses: serve (make serve), dev (make test/check, CI)
# and image (infra/Dockerfile: the Lambda image's serve and bot extras). uv runs from its own venv.
UV_VERSION := 0.13.9
UV := .uv/bin/uv
EXPORT := $(UV) export --frozen --no-emit-project --format requirements-txt --quiet
lock:
	test -x $(UV) || ($(PYTHON) -m venv .uv && .uv/bin/pip install $(PIP_FLAGS) uv==$(UV_VERSION))
	$(UV) lock
	$(EXPORT) --extra serve --extra web --extra bot -o requirements/serve.txt
	$(EXPORT) --extra dev -o requirements/dev.txt
	$(EXPORT) --extra serve --extra bot -o requirements/image.txt

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
	rm -rf $(VENV) .uv .pytest_cache .serverless infra/node_modules
