# The two commands: `make demo` and `make test` (both set themselves up).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Run config of the runs `make` starts: the console at INFO shows what the steps say (the
# DEBUG events stay in the instance's event log and the UI).
INFO_LOGS := "loggers": {"console": {"config": {"log_level": "INFO"}}}
ifeq ($(LAKEHOUSE_ENV),production)
# The production profile (README, "Running beyond one machine"): the instance lives in
# Postgres and steps run on the Celery workers, so the instance directory only holds
# dagster.yaml and scratch files, and no executor config overrides Celery.
export DAGSTER_HOME ?= $(CURDIR)/data/production
EXECUTION ?= {$(INFO_LOGS)}
else
export DAGSTER_HOME := $(CURDIR)
# The log partitions end where a local world's logs end (the last logs/YYYY-MM-DD.jsonl),
# not today: the UI shows the demo's 30 days, none missing. A new log day appears after
# the code location reloads (the UI's Reload, or `make ui` again).
LOG_FILES := $(wildcard $(or $(LAKEHOUSE_SOURCES),data/sources)/logs/*.jsonl)
export LAKEHOUSE_LOGS_END ?= $(lastword $(sort $(basename $(notdir $(LOG_FILES)))))
# One process for every step on one machine: no subprocess start-up per step, no
# two CPU-hungry steps fighting over the cores. `EXECUTION=` uses Dagster's default.
EXECUTION ?= {"execution": {"config": {"in_process": {}}}, $(INFO_LOGS)}
endif

CELERY_CONFIG := deploy/production/celery.yaml
CPU_WORKER_CONCURRENCY ?= 2
LAKEHOUSE_MAX_CONCURRENT_RUNS ?= 4

.PHONY: demo test ui install instance materialize lint clean workers worker-cpu worker-gpu \
	daemon servers browser bench feast-venv label-studio label-studio-venv notebook

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

instance: install
ifeq ($(LAKEHOUSE_ENV),production)
	@$(BIN)/lakehouse settings --instance >/dev/null
	mkdir -p $(DAGSTER_HOME)
	sed 's/max_concurrent_runs: .*/max_concurrent_runs: $(LAKEHOUSE_MAX_CONCURRENT_RUNS)/' \
		deploy/production/dagster.yaml > $(DAGSTER_HOME)/dagster.yaml
else
	mkdir -p data/dagster
endif
	$(BIN)/dagster instance concurrency set gpu 1 >/dev/null

## demo: synthetic world, observe the sources, materialize every asset, sum up the lake
demo: instance
	$(BIN)/lakehouse demo-data
	$(MAKE) --no-print-directory -f $(abspath $(firstword $(MAKEFILE_LIST))) materialize
	$(BIN)/lakehouse summary

## materialize: observe sources, then materialize every asset over all log days
## (`dg launch` is what Dagster 1.13 offers in place of `dagster job execute` and
## `dagster asset materialize`, which still work: README, "In CI")
materialize: instance
	$(BIN)/dg launch -m lakehouse.definitions --job observe_all --config-json '{$(INFO_LOGS)}'
	$(BIN)/dg launch -m lakehouse.definitions --assets '*' \
		--partition-range "$$($(BIN)/lakehouse log-range)" $(if $(EXECUTION),--config-json '$(EXECUTION)')

test: install servers browser label-studio-venv
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15 lakehouse_tests

## servers: what the server tests start on loopback: redis-server (the Celery broker) and
## PostgreSQL (Debian's `postgresql`: initdb lands in /usr/lib/postgresql/N/bin, which the
## tests search); a failed install fails here, and `CI=true` tests fail without them
PG_INITDB = $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb) $(shell command -v initdb))
servers:
	@command -v redis-server >/dev/null || test -x /usr/sbin/redis-server || \
		(apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)
	@test -n "$(PG_INITDB)" || (apt-get update -qq && apt-get install -y -qq \
		postgresql >/dev/null)

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

## label-studio-venv: Label Studio 1.23.2 in a venv of its own (its Django pins clash with
## ours), and an empty data directory with its database migrated once (the migrations take
## about 40 s; tests and `make label-studio` start from a copy of it)
LABEL_STUDIO_VENV := .venv-label-studio
LABEL_STUDIO_TEMPLATE := $(LABEL_STUDIO_VENV)/template-data
LABEL_STUDIO_DATA ?= $(CURDIR)/data/label-studio
LABEL_STUDIO_PORT ?= 8080
LABEL_STUDIO_DOCUMENT_ROOT ?= $(abspath $(or $(LAKEHOUSE_SOURCES),data/sources))
LABEL_STUDIO_QUIET := LABEL_STUDIO_LATEST_VERSION_CHECK=false LABEL_STUDIO_COLLECT_ANALYTICS=false
$(LABEL_STUDIO_VENV)/.installed:
	test -x $(LABEL_STUDIO_VENV)/bin/python || $(PYTHON) -m venv $(LABEL_STUDIO_VENV)
	$(LABEL_STUDIO_VENV)/bin/pip install --quiet label-studio==1.23.2
	rm -rf $(LABEL_STUDIO_TEMPLATE)
	$(LABEL_STUDIO_QUIET) $(LABEL_STUDIO_VENV)/bin/label-studio version --data-dir $(LABEL_STUDIO_TEMPLATE) >/dev/null
	touch $@
label-studio-venv: $(LABEL_STUDIO_VENV)/.installed

## label-studio: Label Studio on http://127.0.0.1:8080 (LABEL_STUDIO_PORT), its data in
## data/label-studio, photos served from the sources directory as local files; sign up in
## the browser, or set LABEL_STUDIO_USERNAME and LABEL_STUDIO_PASSWORD for the first user
label-studio: label-studio-venv
	test -d $(LABEL_STUDIO_DATA) || cp -r $(LABEL_STUDIO_TEMPLATE) $(LABEL_STUDIO_DATA)
	$(LABEL_STUDIO_QUIET) LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \
	LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=$(LABEL_STUDIO_DOCUMENT_ROOT) \
	$(LABEL_STUDIO_VENV)/bin/label-studio start --data-dir $(LABEL_STUDIO_DATA) \
		--internal-host 127.0.0.1 -p $(LABEL_STUDIO_PORT) --no-browser

ui: instance
	$(BIN)/dg dev -h 127.0.0.1

## notebook: JupyterLab on http://127.0.0.1:8888 with notebooks/ (the lake of `make demo`)
notebook: install
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser --notebook-dir notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

clean:
	rm -rf data/lake data/sources data/dagster
