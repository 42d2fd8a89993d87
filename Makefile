# venom.models: one entry point for setting up, testing, benchmarking and the demo.
# Every target sets up what it needs (venv, servers, hosts) and is safe to run again.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PYTEST := $(PY) -m pytest -ra -p no:cacheprovider

.PHONY: venv system test test-unit test-sanity test-units test-lint test-build test-integration test-fleet mutation demo demo-stop bench clean

venv:
	@scripts/venv.sh

system:
	@scripts/setup-system.sh

## The README's test command: every tier, in order; any failure or (under CI) any skip fails.
test: venv system
	@scripts/test.sh all

test-unit: venv
	@scripts/test.sh unit
test-sanity: venv system
	@scripts/test.sh sanity
test-units: venv
	@scripts/test.sh units
test-lint: venv
	@scripts/test.sh lint
test-build: venv
	@scripts/test.sh build
test-integration: venv system
	@scripts/test.sh integration
test-fleet: venv system
	@scripts/test.sh fleet

## Mutation testing of plugins/module_utils against the unit tier (mutmut), score per subsystem.
## CPU heavy and long: not part of `make test` (its CI-sized store run is the `mutation` tier).
## MUTATION_ARGS picks subsystems and options, e.g. MUTATION_ARGS="store --show-survivors".
MUTATION_ARGS ?= all
mutation: venv
	@nice -n 15 $(PY) scripts/mutation.py $(MUTATION_ARGS)

## The README's first command: the main job on an embedded default (this machine as the host).
demo: venv
	@scripts/demo.sh

## Stop what the demo left running (vLLM, the olah mirror); its state stays in ./demo-state.
demo-stop:
	@scripts/demo.sh stop

bench: venv
	@scripts/bench.sh

clean:
	-@[ ! -d demo-state ] || scripts/demo.sh stop  # nothing of the demo keeps running
	rm -rf $(VENV) .build .pytest_cache .hypothesis tests/output demo-state
