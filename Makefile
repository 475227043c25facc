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
# The imported Google protos (google.api.http, and the google.rpc.Status the edge proxy prints)
# come from the installed googleapis-common-protos: linked here, never copied into the repo.
# protoc and buf (a module of buf.yaml) both read them from this directory.
PROTO_DEPS := $(VENV)/proto-deps
GOOGLE_PROTOS := google/api/annotations.proto google/api/http.proto \
  google/rpc/status.proto google/rpc/error_details.proto
# The public API's descriptor set, with its imports and the error detail types, for the edge
# proxy's transcoder and the OpenAPI description; both are written from it with the code too.
DESCRIPTORS := gateway/api/v1/descriptors.binpb

.PHONY: help install proto client docs fmt lint types buf buf-breaking test check run demo bench soak mutation clean

help:
	@echo "make run    - set up and run the gateway with its local federation (PORT=… for another port)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make check  - format check, lint, types, buf lint/breaking, tests"
	@echo "make bench  - benchmarks (see bench/), under 10 minutes; appends bench/RESULTS.md"
	@echo "make soak   - 10-minute soak of the gateway at a steady rate: RSS slope"
	@echo "make mutation - mutation testing of the pure decision modules (bench/MUTATION.md)"
	@echo "make proto  - regenerate gRPC code from proto/ (the client's copy too)"
	@echo "make client - regenerate the Python client's copy of the API (clients/python)"
	@echo "make docs   - regenerate docs/SETTINGS.md from gateway/app/settings.py"

$(STAMP): pyproject.toml constraints.txt clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]' -e clients/python
	touch $@

$(PROTO_DEPS): $(STAMP)
	rm -rf $@ && mkdir -p $@/google/api $@/google/rpc
	src=$$($(PY) -c 'import google.api.annotations_pb2 as m, pathlib; print(pathlib.Path(m.__file__).parents[2])'); \
	for f in $(GOOGLE_PROTOS); do ln -s "$$src/$$f" $@/$$f; done

install: $(STAMP) $(PROTO_DEPS)

# The one pinned generator: deletes the old output first so removed files do not linger.
proto: $(STAMP) $(PROTO_DEPS)
	rm -f $(addsuffix /*_pb2*.py*,$(GEN_DIRS)) $(DESCRIPTORS)
	$(PY) -m grpc_tools.protoc -Iproto -I$(PROTO_DEPS) --python_out=. --grpc_python_out=. \
	  --mypy_out=. --mypy_grpc_out=. $(PROTOS)
	$(PY) -m grpc_tools.protoc -Iproto -I$(PROTO_DEPS) --include_imports --include_source_info \
	  --descriptor_set_out=$(DESCRIPTORS) $(wildcard proto/gateway/api/v1/*.proto) \
	  google/rpc/status.proto google/rpc/error_details.proto
	$(PY) -m gateway.tools.openapi $(DESCRIPTORS) deploy/envoy/openapi.json
	$(PY) -m gateway.tools.edge deploy/envoy/envoy.json
	$(PY) clients/python/generate.py

# The Python client's own copy of the public API, import paths moved under tongban_client
# (clients/python/generate.py says why and how).
client: $(STAMP)
	$(PY) clients/python/generate.py

# The settings reference: generated, and a test fails when it is stale.
docs: $(STAMP)
	mkdir -p docs
	$(PY) -m gateway.app.settings > docs/SETTINGS.md

fmt: $(STAMP)
	$(BIN)/ruff format gateway region_stubs tests bench clients/python

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check gateway region_stubs tests bench clients/python
	$(BIN)/ruff format --check gateway region_stubs tests bench clients/python

types: $(STAMP)
	$(BIN)/mypy

buf: $(STAMP) $(PROTO_DEPS)
	$(BIN)/buf lint

# FILE-level compatibility: a branch is judged against where it left main (its merge base),
# main itself against its previous commit. Skipped where there is no proto to compare with.
# The old protos are judged with today's buf.yaml, beside the same linked Google protos (which
# git does not hold).
buf-breaking: $(STAMP) $(PROTO_DEPS)
	@base=$$(git merge-base HEAD main 2>/dev/null); \
	if [ "$$base" = "$$(git rev-parse HEAD)" ]; then base=$$(git rev-parse -q --verify HEAD^1); fi; \
	if [ -n "$$base" ] && git cat-file -e $$base:buf.yaml 2>/dev/null; then \
	  old=$$(mktemp -d) && trap 'rm -rf "$$old"' EXIT && \
	  git archive "$$base" proto | tar -x -C "$$old" && cp buf.yaml "$$old" && \
	  mkdir -p "$$old/$(VENV)" && ln -s "$(abspath $(PROTO_DEPS))" "$$old/$(PROTO_DEPS)" && \
	  $(BIN)/buf breaking --against "$$old"; \
	else echo "buf breaking: no main to compare with"; fi

# Prometheus and promtool are real dependencies of the tests (rules, alerts, a live scrape).
# So is PostgreSQL (tests/pg.py): the server on 127.0.0.1:5432 if one answers, else a private
# one started from the installed binaries, else the PostgreSQL tests fail saying how to
# install them (`apt-get install postgresql`).
test: $(STAMP) $(PROTO_DEPS)
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

# Mutation testing of the pure decision modules (bench/MUTATION.md), about 8 minutes; installs
# the pinned mutmut into .venv first (it is no dependency of the project).
mutation: $(STAMP)
	$(PY) -m bench.mutation --install

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis data
