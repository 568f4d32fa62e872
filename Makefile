# tenantflow — on a fresh Debian 12 machine, as root:
#   make demo    set everything up and run the two-tenant demo (make demo-stop to end it)
#   make test    set up, lint, start Open vSwitch, run the whole test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON3   ?= python3
VENV      := .venv
PY        := $(VENV)/bin/python
PIP       := $(VENV)/bin/pip --disable-pip-version-check -q
STAMP     := $(VENV)/.tenantflow-installed
TEST_NETNS  ?= tf-test
BENCH_NETNS ?= tf-bench
PYTEST_ARGS ?=

.PHONY: help setup system-packages venv ovs ovs-stop demo demo-stop test unit lint bench lab \
        cleanup-testbeds clean

help:
	@echo "make demo        set up, start OVS + tenantflow serve, two tenants with VMs, show isolation"
	@echo "make demo-stop   tear the demo down"
	@echo "make test        set up, lint, start OVS, run unit + api + integration tests"
	@echo "make unit        unit tests only (fast, no root needed)"
	@echo "make lint        ruff check + mypy (settings in pyproject.toml); part of make test"
	@echo "make bench       benchmarks, quick mode (bench/bench_*.py --quick)"
	@echo "make bench-ovn   OVN 23.03 side by side with tenantflow, same run (OVN_INSTALL=1 apt-installs OVN; BENCH_OVN_ARGS=--quick)"
	@echo "make lab         a Mininet lab: LAB=l2_isolation|cloud|security_groups|provider_vlan (docs/labs.md)"
	@echo "make setup       system packages + .venv with pinned deps (idempotent)"
	@echo "make cleanup-testbeds   remove namespaces/OVS left by killed test runs"

setup: system-packages venv

system-packages:
	@scripts/install-system-packages

venv: $(STAMP)

# Re-installs only when the requirements or setup.py changed.
$(STAMP): requirements.txt requirements-test.txt setup.py
	@test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PIP) install -r requirements.txt -r requirements-test.txt
	$(PIP) install --no-deps -e .
	@test -x $(VENV)/bin/tenantflow
	@touch $@
	@echo "python package installed: $(VENV)/bin/tenantflow"

ovs:
	@scripts/ovs-start

ovs-stop:
	@scripts/ovs-stop

demo: setup
	@scripts/demo.sh

demo-stop:
	@scripts/demo-stop.sh

# Lint first: a lint or type error fails `make test` (and .ci/run) before OVS even starts.
# Integration tests run inside network namespace $(TEST_NETNS), never in the host's.
test: setup lint ovs
	@TEST_NETNS=$(TEST_NETNS) scripts/run-tests $(PYTEST_ARGS)

unit: venv
	@$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

# Both always run (all findings in one go); either failing fails the target.
lint: venv
	@rc=0; $(VENV)/bin/ruff check . || rc=1; $(VENV)/bin/mypy || rc=1; exit $$rc

bench: setup ovs
	@shopt -s nullglob; files=(bench/bench_*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "no bench/bench_*.py yet"; exit 0; fi; \
	rc=0; for f in "$${files[@]}"; do echo "===== $$f --quick"; \
	  scripts/netns-run $(BENCH_NETNS) -- $(PY) $$f --quick || rc=1; done; exit $$rc

# OVN beside tenantflow (issue 14; docs/performance.md "OVN side by side"): private OVS/OVN run dirs in
# a private netns (the script re-executes itself under scripts/netns-run); skips when OVN is missing
# unless OVN_INSTALL=1 (apt-get install ovn-central ovn-host, their services not started).
OVN_INSTALL    ?=
BENCH_OVN_ARGS ?=
.PHONY: bench-ovn
bench-ovn: venv
	@$(PY) bench/bench_ovn.py $(if $(OVN_INSTALL),--install) $(BENCH_OVN_ARGS)

# make lab LAB=cloud [LAB_ARGS=--check]: one lab of labs/ (docs/labs.md); each starts its own
# controller and Open vSwitch in a private namespace.
LAB      ?= l2_isolation
LAB_ARGS ?=
lab: setup ovs
	@test -f labs/$(LAB).py || { echo "no labs/$(LAB).py; labs: $$(cd labs && ls *.py | grep -v common.py | sed 's/\.py$$//' | tr '\n' ' ')"; exit 2; }
	@/usr/bin/python3 labs/$(LAB).py $(LAB_ARGS)

cleanup-testbeds:
	@scripts/cleanup-testbeds

clean: cleanup-testbeds
	rm -rf run/ .pytest_cache .mypy_cache .ruff_cache
