# reviewserve: `make run` serves the committed model on $(PORT); `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 9696
WORKERS ?=
export PORT
ifneq ($(WORKERS),)
export WORKERS
endif

.PHONY: help run dev test system-packages lint unit install install-dev lock clean bench bench-smoke bench-slow bench-overload bench-soak bench-stream bench-batch load-reviews score mutate tools chart-test kind-up kind-deploy kind-e2e kind-down

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[eval]'  # eval: the plots of evaluate / train --eval
	touch $@

$(VENV)/.dev-installed: $(VENV)/.run-installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

$(VENV)/.e2e-installed: $(VENV)/.run-installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[e2e]'
	touch $@

install: $(VENV)/.run-installed ## Create .venv and install the service

install-dev: $(VENV)/.dev-installed ## Install the service with test and lint tools

run: install ## Serve the committed model with gunicorn on $(PORT) (WORKERS=n to override)
	$(BIN)/reviewserve serve

dev: install ## Local development server with reload (never use in a container)
	$(BIN)/reviewserve serve --dev

lint: install-dev ## ruff
	$(BIN)/ruff check service tests benchmarks mutation

unit: install-dev ## Fast unit tests only
	$(BIN)/python -m pytest tests/unit

test: system-packages install-dev tools lint ## Everything: lint, unit, real gunicorn, chart, Docker (starts what it needs)
	$(BIN)/python -m pytest

system-packages: ## Install the system packages the tests need (Debian, root/sudo), or list them and stop
	bash .ci/system-packages

bench: install-dev ## Benchmark vs peers (wrk; ~20-25 min on 2 cores) -> docs/benchmarks.md (BENCH_ARGS=--help)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

bench-smoke: install-dev ## The benchmark in seconds (what CI runs), written under .bench/smoke/
	$(BIN)/python -m benchmarks.run --smoke --results .bench/smoke/peers.json --doc .bench/smoke/benchmarks.md

bench-slow: install-dev ## 256 slow connections vs normal requests -> docs/benchmarks.md
	$(BIN)/python -m benchmarks.slow_clients $(BENCH_ARGS)

bench-overload: install-dev ## Open-loop overload (1x,1.5x,2x,4x capacity; 2 rounds, ~25 min) vs peers -> docs/benchmarks.md
	$(BIN)/python -m benchmarks.overload $(BENCH_ARGS)

bench-soak: install-dev ## Soak at c=8, mixed traffic, recycling on (DURATION=3600: the hour; default 600 s) -> docs/benchmarks.md
	$(BIN)/python -m benchmarks.soak $(if $(DURATION),--seconds $(DURATION)) $(BENCH_ARGS)

bench-stream: install-dev ## Streaming (~4 min): in-process vs end-to-end messages/s, 1 and 2 consumers, latency
	$(BIN)/python -m benchmarks.stream_throughput --out benchmarks/results/stream.json $(BENCH_ARGS)

REVIEW_FILES ?= ../shared/data/uci-sentiment/*.txt
load-reviews: install ## Load review files (REVIEW_FILES, default the UCI sentences) into SQLite reviews.db (again: LOAD_ARGS=--replace)
	$(BIN)/reviewserve load-reviews $(LOAD_ARGS) $(REVIEW_FILES)

score: install ## Score the reviews table missing predictions (ARGS='--source postgresql://... --shard 0/2' etc.)
	$(BIN)/reviewserve score $(ARGS)

bench-batch: install-dev ## Batch scoring: job and 2 shards vs in-process Predictor, SQLite + PostgreSQL (SIZES=100000,1000000)
	$(BIN)/python benchmarks/batch_throughput.py --sizes $(or $(SIZES),100000) --out benchmarks/batch_results.json

mutate: install-dev ## Mutation score of web/ and model/ against tests/unit (mutmut; ~20+ min, not in CI) -> docs/mutation.md
	$(BIN)/python mutation/mutate.py $(MUTATE_ARGS)

tools: ## helm 3 + 4, checkov, promtool, CRD validators into .tools/ (the tests do this when needed)
	bash k8s/scripts/install-tools.sh

chart-test: install-dev ## Chart proof only: helm lint/template, schema, kubernetes-validate, checkov, promtool
	$(BIN)/python -m pytest tests/chart -q

kind-up: ## Local kind cluster: NGINX Gateway Fabric + Gateway on localhost:$(KIND_HOST_PORT) (default 80), metrics-server
	bash k8s/scripts/kind-up.sh

kind-deploy: ## Build the image, load it into kind, helm upgrade --install --wait
	bash k8s/scripts/kind-deploy.sh

kind-e2e: $(VENV)/.e2e-installed ## End-to-end tests against the kind cluster (only the e2e extra: pytest, kubernetes, requests)
	bash k8s/scripts/kind-e2e.sh

kind-down: ## Delete the kind cluster
	bash k8s/scripts/kind-down.sh

lock: install-dev ## Re-pin constraints.txt from the current .venv
	$(BIN)/pip freeze --exclude-editable | grep -v '^reviewserve' > constraints.txt

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mutation
