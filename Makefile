# The two commands: `make demo` and `make test` (both set themselves up).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

ifeq ($(LAKEHOUSE_ENV),production)
# The production profile (README, "Running beyond one machine"): the instance lives in
# Postgres and steps run on the Celery workers, so the instance directory only holds
# dagster.yaml and scratch files, and no executor config overrides Celery.
export DAGSTER_HOME ?= $(CURDIR)/data/production
EXECUTION ?=
else
export DAGSTER_HOME := $(CURDIR)
# One process for every step on one machine: no subprocess start-up per step, no
# two CPU-hungry steps fighting over the cores. `EXECUTION=` uses Dagster's default.
EXECUTION ?= {"execution": {"config": {"in_process": {}}}}
endif

CELERY_CONFIG := deploy/production/celery.yaml
CPU_WORKER_CONCURRENCY ?= 2
LAKEHOUSE_MAX_CONCURRENT_RUNS ?= 4

.PHONY: demo test ui install instance materialize lint clean workers worker-cpu worker-gpu \
	daemon servers browser bench feast-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

instance: install
ifeq ($(LAKEHOUSE_ENV),production)
	mkdir -p $(DAGSTER_HOME)
	sed 's/max_concurrent_runs: .*/max_concurrent_runs: $(LAKEHOUSE_MAX_CONCURRENT_RUNS)/' \
		deploy/production/dagster.yaml > $(DAGSTER_HOME)/dagster.yaml
else
	mkdir -p data/dagster
endif
	$(BIN)/dagster instance concurrency set gpu 1 >/dev/null

## demo: synthetic world, observe the sources, materialize every asset, list the tables
demo: instance
	$(BIN)/lakehouse demo-data
	$(MAKE) --no-print-directory materialize
	$(BIN)/lakehouse tables

## materialize: observe sources, then materialize every asset over all log days
materialize: instance
	$(BIN)/dagster job execute -m lakehouse.definitions -j observe_sources
	$(BIN)/dagster job execute -m lakehouse.definitions -j observe_logs
	$(BIN)/dagster asset materialize -m lakehouse.definitions --select '*' \
		--partition-range "$$($(BIN)/lakehouse log-range)" $(if $(EXECUTION),--config-json '$(EXECUTION)')

test: install servers browser
	$(BIN)/python -m pytest lakehouse_tests

## servers: the Redis server the Celery tests start on loopback (Postgres is on the machine)
servers:
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq \
		redis-server >/dev/null) || echo "redis-server could not be installed: Celery tests skip"

## browser: Debian's chromium, which the UI tests drive with Playwright by its path (no
## browser download); a failed install fails here, and `CI=true` tests fail without it
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq \
		chromium >/dev/null)

## worker-cpu, worker-gpu: one Celery worker for that queue, in the foreground (production)
worker-cpu: instance
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dagster-celery worker start -A dagster_celery.app -y $(CELERY_CONFIG) -q cpu -n cpu \
		-- --concurrency=$(CPU_WORKER_CONCURRENCY)
worker-gpu: instance
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dagster-celery worker start -A dagster_celery.app -y $(CELERY_CONFIG) -q gpu -n gpu \
		-- --concurrency=1

## workers: both workers on this machine (stop with Ctrl-C)
workers:
	$(MAKE) --no-print-directory -j2 worker-cpu worker-gpu

## daemon: dequeues queued runs (backfills, schedules, sensors, automation)
daemon: instance
	$(BIN)/dagster-daemon run -m lakehouse.definitions

## bench: the benchmark against its peers, SCALE=tiny|small|full (100k photos)
SCALE ?= full
bench: install
	$(BIN)/python -m bench --scale $(SCALE)

## feast-venv: Feast 0.67 in a venv of its own (it pins other versions of our libraries);
## where it exists, the benchmark's point-in-time comparison also runs against Feast
feast-venv:
	test -x .venv-feast/bin/python || $(PYTHON) -m venv .venv-feast
	.venv-feast/bin/pip install --quiet feast==0.67.0

ui: instance
	$(BIN)/dagster dev -m lakehouse.definitions -h 127.0.0.1

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

clean:
	rm -rf data/lake data/sources data/dagster
