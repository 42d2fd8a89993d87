# venom.models: one entry point for setting up, testing, benchmarking and the demo.
# Every target sets up what it needs (venv, servers, hosts) and is safe to run again.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PYTEST := $(PY) -m pytest -ra -p no:cacheprovider

.PHONY: venv venv-newest system test test-unit test-sanity test-units test-sanity-newest test-units-newest test-lint test-build test-integration test-integration-newest test-fleet mutation demo demo-stop bench clean

venv:
	@scripts/venv.sh

## The newest ansible-core release tested, on Python 3.12 (tests/requirements-newest.txt).
venv-newest:
	@scripts/venv.sh newest

system:
	@scripts/setup-system.sh

## The README's test command: every tier, in order; any failure or (under CI) any skip fails.
test: venv venv-newest system
	@scripts/test.sh all

test-unit: venv
	@scripts/test.sh unit
test-sanity: venv system
	@scripts/test.sh sanity
test-units: venv
	@scripts/test.sh units
test-sanity-newest: venv venv-newest system
	@scripts/test.sh sanity-newest
test-units-newest: venv venv-newest
	@scripts/test.sh units-newest
test-lint: venv
	@scripts/test.sh lint
test-build: venv
	@scripts/test.sh build
test-integration: venv system
	@scripts/test.sh integration
test-integration-newest: venv venv-newest system
	@scripts/test.sh integration-newest
test-fleet: venv system
	@scripts/test.sh fleet

## Mutation testing of plugins/module_utils against the unit tier (mutmut), score per subsystem.
## CPU heavy and long: not part of `make test` (its CI-sized store run is the `mutation` tier).
## MUTATION_ARGS picks subsystems and options, e.g. MUTATION_ARGS="store --show-survivors".
MUTATION_ARGS ?= all
mutation: venv
	@nice -n 15 $(PY) scripts/mutation.py $(MUTATION_ARGS)

## The README's first command: the main job on an embedded default (this machine as the host).
## scripts/demo.sh sets up everything itself, the Debian packages it needs (as root) and .venv first.
demo:
	@scripts/demo.sh

## Stop what the demo left running (vLLM, the olah mirror); its state stays in ./demo-state.
demo-stop:
	@scripts/demo.sh stop

bench: venv
	@scripts/bench.sh

clean:
	-@[ ! -d demo-state ] || scripts/demo.sh stop  # nothing of the demo keeps running
	rm -rf $(VENV) .venv-newest .build .pytest_cache .hypothesis tests/output demo-state
