# One command per chore; `make check` runs them all.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

PROTOS := $(wildcard proto/gateway/api/v1/*.proto) $(wildcard proto/region_stubs/admin/v1/*.proto)
GEN_DIRS := gateway/api/v1 region_stubs/admin/v1

.PHONY: help install proto client fmt lint types buf buf-breaking test check run demo bench soak clean

help:
	@echo "make run    - set up and run the gateway with its local federation (PORT=… for another port)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make check  - format check, lint, types, buf lint/breaking, tests"
	@echo "make bench  - benchmarks (see bench/), under 10 minutes; appends bench/RESULTS.md"
	@echo "make soak   - 10-minute soak of the gateway at a steady rate: RSS slope"
	@echo "make proto  - regenerate gRPC code from proto/ (the client's copy too)"
	@echo "make client - regenerate the Python client's copy of the API (clients/python)"

$(STAMP): pyproject.toml constraints.txt clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]' -e clients/python
	touch $@

install: $(STAMP)

# The one pinned generator: deletes the old output first so removed files do not linger.
proto: $(STAMP)
	rm -f $(addsuffix /*_pb2*.py*,$(GEN_DIRS))
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. \
	  --mypy_out=. --mypy_grpc_out=. $(PROTOS)
	$(PY) clients/python/generate.py

# The Python client's own copy of the public API, import paths moved under tongban_client
# (clients/python/generate.py says why and how).
client: $(STAMP)
	$(PY) clients/python/generate.py

fmt: $(STAMP)
	$(BIN)/ruff format gateway region_stubs tests bench clients/python

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check gateway region_stubs tests bench clients/python
	$(BIN)/ruff format --check gateway region_stubs tests bench clients/python

types: $(STAMP)
	$(BIN)/mypy

buf: $(STAMP)
	$(BIN)/buf lint

# FILE-level compatibility: a branch is judged against where it left main (its merge base),
# main itself against its previous commit. Skipped where there is no proto to compare with.
buf-breaking: $(STAMP)
	@base=$$(git merge-base HEAD main 2>/dev/null); \
	if [ "$$base" = "$$(git rev-parse HEAD)" ]; then base=$$(git rev-parse -q --verify HEAD^1); fi; \
	if [ -n "$$base" ] && git cat-file -e $$base:buf.yaml 2>/dev/null; then \
	  $(BIN)/buf breaking --against ".git#ref=$$base"; \
	else echo "buf breaking: no main to compare with"; fi

# Prometheus and promtool are real dependencies of the tests (rules, alerts, a live scrape).
# So is PostgreSQL (tests/pg.py): the server on 127.0.0.1:5432 if one answers, else a private
# one started from the installed binaries, else the PostgreSQL tests fail saying how to
# install them (`apt-get install postgresql`).
test: $(STAMP)
	@sh deploy/scripts/ensure-prometheus.sh
	$(BIN)/pytest

check: lint types buf buf-breaking test

# `make run PORT=50061` serves the gateway on another port (the stubs take free ports then).
run: $(STAMP)
	$(BIN)/tongban up $(if $(PORT),--port $(PORT) --stub-base-port 0)

demo: $(STAMP)
	$(BIN)/tongban demo

bench: $(STAMP)
	$(PY) -m bench

soak: $(STAMP)
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis data
