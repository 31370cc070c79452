# The two commands: `make demo` and `make test` (both set themselves up).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)

# One process for every step on one machine: no subprocess start-up per step, no
# two CPU-hungry steps fighting over the cores. `EXECUTION=` uses Dagster's default.
EXECUTION ?= {"execution": {"config": {"in_process": {}}}}

.PHONY: demo test ui install instance materialize lint clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

instance: install
	mkdir -p data/dagster
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

test: install
	$(BIN)/python -m pytest lakehouse_tests

## bench: the benchmark against its peers, SCALE=tiny|small|full (the issue's 100k photos)
SCALE ?= full
bench: install
	$(BIN)/python -m bench --scale $(SCALE)

ui: instance
	$(BIN)/dagster dev -m lakehouse.definitions -h 127.0.0.1

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf data/lake data/sources data/dagster
