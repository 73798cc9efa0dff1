# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install Python and npm dependencies only when missing or changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
SCENARIO ?= scenarios/demo.yaml
PYTEST_ARGS ?=
# The suite mostly waits (blocks, node and Ray start-up), so it runs in 3 worker processes even on
# 2 cores. Whole modules per worker (their anvil and Ray fixtures are per module), in collection
# order, which tests/conftest.py starts with the slowest modules. PYTEST_XDIST= runs it in one process.
PYTEST_XDIST ?= -n 3 --dist loadfile --no-loadscope-reorder

.PHONY: setup demo test bench clean-cache

setup: $(PY_STAMP) $(NPM_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(PY_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/dcai run $(SCENARIO)

test: setup
	sh tests/setup_debian.sh
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

# Benchmarks (benchmarks/README.md): web3.py comes in as the baseline. BENCH_ARGS e.g. --quick.
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(BENCH_STAMP) $(NPM_STAMP)
	$(BIN)/python benchmarks/throughput.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/scale.py $(BENCH_ARGS) $(if $(filter --quick,$(BENCH_ARGS)),,--agents 100000)
	$(BIN)/python -m benchmarks.gas $(if $(filter --quick,$(BENCH_ARGS)),--output $$(mktemp -d)/gas.json,)
	$(BIN)/python benchmarks/soak.py $(BENCH_ARGS) $(if $(filter --quick,$(BENCH_ARGS)),,--tx 1000000 --prune-history --refunds-only --deadline-s 7200 --out benchmarks/results/soak.json)
	if [ -f benchmarks/accuracy.py ]; then $(BIN)/python benchmarks/accuracy.py $(BENCH_ARGS); fi
	$(BIN)/python -m benchmarks.fidelity $(BENCH_ARGS) $(if $(filter --quick,$(BENCH_ARGS)),--output $$(mktemp -d)/fidelity.json,)
	$(BIN)/python benchmarks/bad_inputs.py $(if $(filter --quick,$(BENCH_ARGS)),--repeats 1,--output benchmarks/results/bad_inputs.json)
	$(BIN)/python benchmarks/report_results.py

clean-cache:
	rm -rf .cache
