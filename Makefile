# Two commands matter: `make demo` and `make test`. Both set up what they need.
.PHONY: audit bench-bundle bench-compact bench-concurrent bench-destroy bench-persons bench-mariadb bench-scale demo serve test lint typecheck pytest setup system-deps browser-deps schemas clean bench

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The servers the tests and the demo start on loopback, from Debian's packages: PostgreSQL
# (the platform database), Redis (its cache), MariaDB (a second relational system), pgBackRest
# (the platform's physical backups), pg_repack (online compaction) and age (the client's side
# of encrypted delivery); and
# libmariadb-dev with pkg-config, which the MariaDB driver (mysqlclient) is built against.
# Only what is missing is installed.
SYSTEM_PACKAGES := postgresql:initdb redis-server:redis-server mariadb-server:mariadbd \
	pgbackrest:pgbackrest age:age libmariadb-dev:mariadb_config pkg-config:pkg-config \
	postgresql-15-repack:pg_repack
system-deps:
	@missing=""; for entry in $(SYSTEM_PACKAGES); do \
	  package=$${entry%%:*}; binary=$${entry#*:}; \
	  command -v $$binary >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/$$binary /usr/sbin/$$binary \
	    >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing server packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { echo "installing Chromium and ChromeDriver (browser check)"; \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	touch $@

setup: system-deps $(VENV)/.synced

demo: setup
	$(VENV)/bin/offboard demo

# A local Prefect server with the UI, every deployment, a worker and the link endpoint.
serve: setup
	$(VENV)/bin/offboard serve-local

# Style, and the import contracts of docs/architecture.md (pyproject.toml [tool.importlinter]).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup browser-deps
	$(VENV)/bin/pytest

test: lint typecheck pytest

# Known vulnerabilities in the locked dependencies (needs PyPI's JSON API or OSV: see
# docs/security.md for why this is not part of CI here).
audit: setup
	$(VENV)/bin/pip-audit --strict --vulnerability-service pypi --skip-editable --progress-spinner off -l

schemas: setup
	$(VENV)/bin/python -m offboarding.dev.schemas

clean:
	rm -rf .offboard .pytest_cache .mypy_cache .ruff_cache

# Export benchmark against DuckDB, ADBC, psycopg and pg_dump (see benchmarks/run.py).
BENCH_ARGS ?=
benchmarks/.venv-peers/.synced: $(UV) benchmarks/requirements-peers.txt
	$(UV) venv --quiet --allow-existing --python 3.11 benchmarks/.venv-peers
	VIRTUAL_ENV=benchmarks/.venv-peers $(UV) pip sync --quiet benchmarks/requirements-peers.txt
	touch $@

bench: setup benchmarks/.venv-peers/.synced
	$(VENV)/bin/python -m benchmarks.run $(BENCH_ARGS)

# Twenty tenants offboarded at once through a real Prefect server (replaces its section of RESULTS.md).
bench-concurrent: setup
	$(VENV)/bin/python -m benchmarks.concurrent_cases $(BENCH_ARGS)

# The MariaDB location's reader against the mariadb client, mariadb-dump and other readers.
bench-mariadb: setup benchmarks/.venv-peers/.synced
	$(VENV)/bin/python -m benchmarks.mariadb $(BENCH_ARGS)

# Destruction on a live platform against plain SQL, and on twice the neighbours (benchmarks/destroy.py)
bench-destroy: setup
	$(VENV)/bin/python -m benchmarks.destroy $(BENCH_ARGS)

# The compaction's rewrite against the deletion, and its cost per tenant when one run serves many
bench-compact: setup
	$(VENV)/bin/python -m benchmarks.compact $(BENCH_ARGS)

# A bundle's ZIP parts written at once against zip -0 (benchmarks/bundle_parts.py)
bench-bundle: setup
	$(VENV)/bin/python -m benchmarks.bundle_parts $(BENCH_ARGS)

# One person's access and erasure on a platform that grows around them (benchmarks/persons.py)
bench-persons: setup
	$(VENV)/bin/python -m benchmarks.persons $(BENCH_ARGS)

# A tenant ten times the benchmark size: memory flat, time linear? (replaces its section of RESULTS.md)
# and the export on a Dask cluster of 1, 2 and 4 worker processes (benchmarks/distributed.py)
bench-scale: setup
	$(VENV)/bin/python -m benchmarks.scale $(BENCH_ARGS)
	$(VENV)/bin/python -m benchmarks.distributed $(DISTRIBUTED_ARGS)
