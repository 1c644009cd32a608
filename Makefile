# dbmigrate — the two commands that matter: `make run` and `make test`.
# Everything they need is installed on demand and cached outside git
# (~/.cache/dbmigrate for Kubernetes/PostgreSQL builds, .venv for Python).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help venv k8s-bins tools pg bench bench-quick bench-upgrade demo cluster-up cluster-down images e2e lint test test-unit test-integration test-dataplane generate run clean

help:
	@echo "make demo   - a test migration 15 -> 17 on a real (local) cluster, end to end"
	@echo "make run    - start the operator against \$$KUBECONFIG's cluster, or an embedded control plane"
	@echo "make test   - install what the tests need, lint, run every test tier"
	@echo "make bench  - copy throughput and switchover write-interruption benchmarks"
	@echo "make lint | test-unit | test-integration | test-dataplane | generate | k8s-bins | tools | pg"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

k8s-bins:
	@bash hack/k8s-bins.sh >/dev/null

# kubeconform (Go module proxy) and a Lua interpreter (Debian) for the chart and Argo CD tests.
tools:
	@bash hack/kubeconform.sh >/dev/null
	@bash hack/lua.sh >/dev/null

# PostgreSQL 15, 16, 17 and 18 for the dataplane tier and the benchmarks (cached).
pg:
	@bash hack/postgres.sh

# Benchmarks (print a table, write JSON under bench/results/): copy throughput against
# pg_dump | psql and pg_basebackup, and the switchover's write interruption under load.
# The copy's data go to a journaled ext4 (hack/bench-fs.sh says why) unless
# DBMIGRATE_BENCH_DIR names a directory; without root or a loop device, the temp directory.
BENCH_DIR = $${DBMIGRATE_BENCH_DIR:-$$(bash hack/bench-fs.sh)}
bench: venv pg
	DBMIGRATE_BENCH_DIR="$(BENCH_DIR)" $(PY) bench/copy_bench.py
	$(PY) bench/switchover_bench.py

# A copy method not offered yet (physical copy + pg_upgrade --link), on the copy benchmark's data.
bench-upgrade: venv pg
	$(PY) bench/upgrade_probe.py

bench-quick: venv pg
	DBMIGRATE_BENCH_DIR="$(BENCH_DIR)" DBMIGRATE_BENCH_MB=200 $(PY) bench/copy_bench.py
	DBMIGRATE_BENCH_ROUNDS=5 $(PY) bench/switchover_bench.py

# After changing the chart or the CRD: regenerate manifests/ and docs/api.md (tests check drift).
generate: venv k8s-bins
	cp crds/dbmigrate.dev_migrations.yaml charts/dbmigrate/crds/
	$(PY) hack/gen-manifests.py
	$(PY) hack/gen-docs.py

lint: venv
	$(VENV)/bin/ruff check operator tests hack docs/examples
	$(VENV)/bin/mypy operator
	$(VENV)/bin/lint-imports

test-unit: venv tools
	$(VENV)/bin/pytest tests/unit -q $(PYTEST_ARGS)

test-integration: venv k8s-bins tools
	$(VENV)/bin/pytest tests/integration -q $(PYTEST_ARGS)

test-dataplane: venv pg
	$(VENV)/bin/pytest tests/dataplane -q $(PYTEST_ARGS)

# One pytest run over every tier (unit, integration, dataplane, e2e), so CI prints one summary
# line with all counts. The e2e tier brings up the local cluster itself (or uses $$E2E_KUBECONFIG).
# --durations: the slowest tests (the e2e scenarios) with their times, in every CI log.
test: venv k8s-bins tools pg lint
	$(VENV)/bin/pytest tests e2e -q -rfE --durations=15 $(PYTEST_ARGS)

run: venv k8s-bins
	@bash hack/run.sh

# A test migration 15 -> 17 on a real cluster (the local one of hack/cluster unless $KUBECONFIG
# answers): operator installed with the Helm chart, sample source, progress, the test server.
demo: venv
	@bash hack/demo.sh

# The local single-node cluster (root; containerd + kubelet, no Docker) and its images.
cluster-up:
	@bash hack/cluster/up.sh
cluster-down:
	@bash hack/cluster/down.sh
images:
	@bash images/build.sh all

# e2e on a real cluster ($$E2E_KUBECONFIG / $$KUBECONFIG if it answers, else the local cluster).
e2e: venv
	$(VENV)/bin/pytest e2e -q --durations=0 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
