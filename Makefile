# The two commands a newcomer needs:
#   make up     set up everything (virtualenv, packages, database, demo project) and run the platform
#   make test   run the whole test suite
# Both create what is missing and skip what is already there.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
DEMO_ROWS ?= 100000

.PHONY: up test install browsers bench clean

# The stamp file is remade whenever the dependency lists change.
$(VENV)/.installed: pyproject.toml package.json package-lock.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed

# Debian's Chromium drives the browser tests (Playwright never downloads a browser here).
browsers:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

up: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo --rows $(DEMO_ROWS)
	$(PY) manage.py run_platform --port $(PORT)

test: install browsers
	$(PY) -m pytest -n 2 --dist loadfile

bench: install
	$(PY) bench/demo_data.py
	$(PY) bench/pipeline.py
	$(PY) bench/api.py

clean:
	rm -rf $(VENV) node_modules var
