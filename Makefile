# Two set-up commands for a fresh Debian 12 machine (as root):  `make demo`  and  `make test`.
VENV ?= /opt/triomesh/venv
PY := $(VENV)/bin/python
export VENV

.PHONY: setup demo test lint unit bench bench-setup clean

setup:
	@scripts/setup.sh dev

## demo: bring up a lab of network-namespace pods, send traffic through the proxies, show tables and metrics, tear down
demo: setup
	$(VENV)/bin/meshctl lab demo

## test: lint (ruff, mypy, import contracts) and every test, including the root/netns ones (they fail, never skip)
test: setup bench-setup lint
	REQUIRE_NETNS=1 $(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## bench: install the peers (Envoy, nginx, HAProxy, wrk, h2load, iperf3) and run the full benchmark, one
## interleaved run of every scenario and proxy, into perf/results/ (BENCH_ARGS="--smoke" for a quick check)
bench: bench-setup
	$(PY) -m perf run $(BENCH_ARGS)

bench-setup: setup
	@scripts/setup-bench.sh

unit: setup
	$(PY) -m pytest -q -m "not netns" $(PYTEST_ARGS)

clean:
	rm -rf build *.egg-info .mypy_cache .pytest_cache .ruff_cache
