# The two commands a newcomer needs (see README):
#   make run    set up, migrate, load demo data, serve on http://127.0.0.1:5000 (SQLite)
#   make test   run the whole test suite (SQLite by default; PostgreSQL when
#               PORTAL_TEST_DATABASE_URL names it)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PORTAL_ENV ?= development
# Test processes (pytest-xdist); each has its own database, mail server and browser.
TEST_WORKERS ?= 2

.PHONY: run setup install browser pdf oidc axe test test-sqlite test-postgres lint fmt graph clean translations \
        bench-seats bench-usage bench-billing bench-pages bench-scale bench-soak bench-usage-batch bench-provisioning

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m portal.i18n  # the Russian catalogue, compiled for Flask-Babel

setup: install pdf
	$(BIN)/portal db upgrade
	$(BIN)/portal demo

# The web server and a job worker (with the schedule) together; Ctrl-C stops both. The worker's
# queue is a SQLite file in instance/ (no server needed); its log goes to instance/worker.log.
run: setup
	@echo "Serving the portal at http://127.0.0.1:5000 (Ctrl-C to stop); mail goes to /dev/outbox"
	@echo "A job worker runs beside it (log: instance/worker.log)"
	@$(BIN)/portal worker --concurrency 1 >instance/worker.log 2>&1 & worker=$$!; \
	  trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/flask --app portal run --host 127.0.0.1 --port 5000

# Debian's chromium for the browser tests (no browser download: Playwright drives /usr/bin/chromium).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Debian's pango and fonts for WeasyPrint (invoice PDFs); most machines have them already.
pdf:
	@{ ldconfig -p | grep -q 'libpango-1.0.so.0' && ldconfig -p | grep -q 'libpangoft2-1.0.so.0' \
	   && fc-list 2>/dev/null | grep -qi dejavu; } || { \
	  echo "Installing Debian's pango and DejaVu fonts for the invoice PDFs"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    libpango-1.0-0 libpangoft2-1.0-0 fontconfig fonts-dejavu-core >/dev/null; }

# The real OpenID provider (npm oidc-provider) the SSO tests start; installed from the lock file.
oidc: tests/oidc/node_modules/.package-lock.json

tests/oidc/node_modules/.package-lock.json: tests/oidc/package.json tests/oidc/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm (Node.js) is needed for the SSO tests"; exit 1; }
	npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error

# axe-core (npm), which the browser tests inject into pages to check accessibility.
axe: tests/browser/axe/node_modules/.package-lock.json

tests/browser/axe/node_modules/.package-lock.json: tests/browser/axe/package.json tests/browser/axe/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm (Node.js) is needed for the browser tests"; exit 1; }
	npm ci --prefix tests/browser/axe --no-audit --no-fund --loglevel=error

test: install browser pdf oidc axe
	PORTAL_ENV=test $(BIN)/pytest -q -n $(TEST_WORKERS) --durations=20

# Benchmarks (docs/PERFORMANCE.md): each prints the portal beside a bare baseline measured
# in the same run, on SQLite and on PostgreSQL (PORTAL_BENCH_POSTGRES_URL names the server;
# default the local one as postgres). BENCH_ARGS passes options, e.g. BENCH_ARGS=--quick.
bench-seats: install
	$(BIN)/python -m benchmarks.seats_api $(BENCH_ARGS)

bench-usage: install
	$(BIN)/python -m benchmarks.usage $(BENCH_ARGS)

bench-billing: install
	$(BIN)/python -m benchmarks.billing $(BENCH_ARGS)

bench-pages: install
	$(BIN)/python -m benchmarks.pages $(BENCH_ARGS)

# Pages at scale (10,000 organisations, 30,000,000 usage events in portal_scale, loaded once
# and reused; BENCH_ARGS=--scale 0.01 for a quick check) and the mixed soak on it.
bench-scale: install
	$(BIN)/python -m benchmarks.scale $(BENCH_ARGS)

bench-soak: install
	$(BIN)/python -m benchmarks.soak $(BENCH_ARGS)

bench-usage-batch: install
	$(BIN)/python -m benchmarks.usage_batch $(BENCH_ARGS)

# SCIM provisioning: 10,000 seats through a group mapping until the vendor holds them (BENCH_ARGS="--n 500": quick)
bench-provisioning: install
	$(BIN)/python -m benchmarks.provisioning $(BENCH_ARGS)

# The checks CI runs before the tests (.ci/run); pre-commit runs the same (.pre-commit-config.yaml).
lint: install
	$(BIN)/ruff check portal tests benchmarks
	$(BIN)/ruff format --check portal tests benchmarks
	$(BIN)/mypy portal
	$(BIN)/lint-imports --no-logo

# The import graph between the portal's packages (mermaid and a table), printed and written
# into docs/ARCHITECTURE.md.
# The words to translate (docs/I18N.md): extract the marked messages, then merge them into the
# Russian catalogue (new entries empty, to fill in; `make install` compiles it).
translations: install
	$(BIN)/pybabel extract -F portal/translations/babel.cfg -k _l -k _n:1,2 -k _ln:1,2 \
	  --no-location --sort-output -o portal/translations/messages.pot .
	$(BIN)/pybabel update -i portal/translations/messages.pot -d portal/translations -l ru \
	  --no-fuzzy-matching --ignore-obsolete
	$(BIN)/python -m portal.i18n

graph: install
	$(BIN)/python -m tests.import_graph --write

fmt: install
	$(BIN)/ruff format portal tests benchmarks
	$(BIN)/ruff check --fix portal tests benchmarks

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache *.egg-info tests/oidc/node_modules tests/browser/axe/node_modules
