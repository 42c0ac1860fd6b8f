# Two entry points: `make run` (the main job on the default corpus, CPU preset) and `make test`.
# Both set up .venv first if needed; the environment is exactly requirements.lock.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (tests/conftest.py says how modules are shared out); 0 runs in-process
TEST_WORKERS ?= 2

export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup run test lint bench deploy lock clean-venv

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python --no-deps --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

run: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# ruff: pyflakes, pycodestyle and import order (pyproject.toml [tool.ruff]); CI runs it before the tests
lint: setup
	$(BIN)/ruff check .

# Work pools + the deployments of prefect.yaml, on the Prefect server of PREFECT_API_URL. The nightly GPU
# deployment runs the image GDDSP_IMAGE and logs to MLFLOW_TRACKING_URI (defaults below are placeholders);
# the local deployment runs in GDDSP_PROJECT_DIR (default: this checkout).
deploy: setup
	$(BIN)/prefect work-pool create gpu-k8s --type kubernetes --base-job-template deploy/k8s-gpu-job-template.json --overwrite
	$(BIN)/prefect work-pool create local-cpu --type process --overwrite
	GDDSP_IMAGE=$${GDDSP_IMAGE:-generative-ddsp:latest} MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-http://mlflow:5000} \
		GDDSP_PROJECT_DIR=$${GDDSP_PROJECT_DIR:-$(CURDIR)} \
		$(BIN)/prefect --no-prompt deploy --all

bench: setup
	$(BIN)/python -m bench.prepare_throughput
	$(BIN)/python -m bench.f0_accuracy
	$(BIN)/python -m bench.train_throughput
	$(BIN)/python -m bench.preset_curve
	$(BIN)/python -m bench.multi_worker
	$(BIN)/python -m bench.extract_z_memory
	$(BIN)/python -m bench.generation_speed
	$(BIN)/python -m bench.gmm_fit
	$(BIN)/python -m bench.stream_latency

# Re-resolve the direct dependencies and rewrite the lock (needs the package registry).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet uv==$(UV_VERSION)
	.venv-lock/bin/uv pip install --python .venv-lock/bin/python -e '.[test]'
	.venv-lock/bin/uv pip install --python .venv-lock/bin/python --no-deps ddsp==3.7.0 tinysoundfont==0.3.7
	{ head -3 requirements.lock; .venv-lock/bin/uv pip freeze --python .venv-lock/bin/python --exclude-editable | grep -vE '^(pip|uv|wheel)=='; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .venv-lock

clean-venv:
	rm -rf $(VENV)
