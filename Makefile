# The two commands a newcomer needs:
#   make up     set up everything (virtualenv, packages, database, demo project) and run the platform
#   make test   run the whole test suite (on SQLite, and its database-facing part on PostgreSQL)
# Both create what is missing and skip what is already there.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
DEMO_ROWS ?= 100000

.PHONY: up test lint test-sqlite test-postgres install browsers postgres bench clean image image-gpu

# The stamp file is remade whenever the dependency lists change.
$(VENV)/.installed: pyproject.toml package.json package-lock.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cloud]'
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed

# Debian's Chromium drives the browser tests (Playwright never downloads a browser here).
browsers:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# collectstatic writes the static files under hashed names (a deploy never serves a stale script) with their manifest.
up: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo --rows $(DEMO_ROWS)
	$(PY) manage.py run_platform --port $(PORT)

# The whole suite on SQLite (the default database), then everything that touches the database again on
# PostgreSQL, in a throwaway server: nothing SQLite-only gets in.
test: lint test-sqlite test-postgres

# ruff (configured in pyproject.toml): a finding or an unformatted file fails the test command.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-sqlite: install browsers
	$(PY) -m pytest -n 2 --dist loadfile

test-postgres: install postgres
	$(PY) tests/postgres_server.py -- $(PY) -m pytest -n 2 --dist loadfile tests/control

# PostgreSQL's server binaries, for test-postgres (Debian's package keeps them out of PATH; the script finds them).
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

bench: install
	$(PY) bench/demo_data.py
	$(PY) bench/pipeline.py
	$(PY) bench/api.py
	$(PY) bench/serving_limits.py
	$(PY) bench/quality.py

# The pipeline images remote runners run (Dockerfile, Dockerfile.gpu): set PIPELINE_IMAGE / PIPELINE_GPU_IMAGE to
# where they are pushed. Needs a Docker engine.
IMAGE ?= ml-platform-pipeline
IMAGE_TAG ?= $(shell $(PYTHON) -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")

image:
	docker build -f Dockerfile -t $(IMAGE):$(IMAGE_TAG) .

image-gpu:
	docker build -f Dockerfile.gpu -t $(IMAGE)-gpu:$(IMAGE_TAG) .

clean:
	rm -rf $(VENV) node_modules var
