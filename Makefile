# Handwritten-digit recognition with PaddlePaddle: train -> export -> serve.
# `make serve` and `make test` create the virtual environment themselves on a fresh clone.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The shared MNIST copy beside the checkout; unset (and no --data-dir) means Paddle's downloader.
MNIST_DIR ?= $(firstword $(wildcard ../shared/data/mnist))
export MNIST_DIR
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT
TRAIN_ARGS ?=
# NPROC > 1: collective data-parallel training through Paddle's launcher (gloo on CPU, NCCL on GPUs).
# Default: 2 processes where there are 2 cores, one math thread each (a second thread per process
# slows these small convolutions down; a second process nearly doubles images/s: README, Training).
NPROC ?= $(if $(filter 0 1,$(shell nproc 2>/dev/null || echo 1)),1,2)
LAUNCH_LOG_DIR ?= runs/launch-logs
EXPORT_ARGS ?=
# QUICK=1: the smoke-sized experiment table; EXPERIMENT_ARGS passes options (--jobs, --only, --limit-train ...).
QUICK ?=
EXPERIMENT_ARGS ?=
PYTEST_ARGS ?=
# `make serve` writes the gunicorn master's PID here; `make reload`, `make pin` and `make unpin` signal it.
PIDFILE ?= $(or $(XDG_RUNTIME_DIR),/tmp)/digits-serve-$(PORT).pid
MODEL_DIR ?= models

.PHONY: help venv chromium fonts nginx train experiments export serve reload pin unpin test soak wrk bench java17 bench-torchserve container-test clean

help:
	@echo "make serve    - create the venv and serve the committed model on http://$(HOST):$(PORT) (FRONT=nginx: behind nginx, as the container)"
	@echo "make reload   - a running make serve loads the newest valid model version, without dropping a request"
	@echo "make pin VERSION=N / make unpin - serve version N (rollback) / the newest valid version again, then reload"
	@echo "make test     - create the venv, install Chromium if missing, and run the test suite"
	@echo "make soak     - 20000 mixed good and hostile requests against a real gunicorn (1-2 min)"
	@echo "make train    - train the default model on MNIST (TRAIN_ARGS='--model lenet ...'; 2 data-parallel processes on 2+ cores, NPROC=1: one)"
	@echo "make experiments - the course's experiment table into reports/experiments/ (QUICK=1: smoke-sized)"
	@echo "make export   - publish the newest run's best checkpoint into models/ (EXPORT_ARGS=...)"
	@echo "make container-test - lint the Dockerfile, build the image with podman, run docker-compose.yml, prove it serves"
	@echo "make bench    - measure training, model, preprocessing and HTTP speed into bench-results/ (QUICK=1: smoke run)"
	@echo "make bench-torchserve - TorchServe's MNIST example against this server, same PNG, one run (own venv + Java 17; 5-10 min)"

$(VENV)/.installed: requirements.txt requirements-train.txt requirements-dev.txt requirements-onnx.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-train.txt -r requirements-dev.txt -r requirements-onnx.txt -c constraints.txt
	touch $@

venv: $(VENV)/.installed

# The browser tests drive Debian's Chromium (Playwright never downloads a browser build).
# Installed only when missing; CI runs as root on a fresh machine.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Fonts for the non-digit pictures (train/negatives.py): more families to train on (FreeFont, URW) and
# to hold out for evaluation (Liberation, URW Gothic, C059). Installed only when missing; without them
# matplotlib's bundled DejaVu/Computer Modern (training) and STIX (held out) fonts are used.
FONT_PACKAGES := fonts-freefont-ttf fonts-urw-base35 fonts-liberation
FONT_MARKERS := /usr/share/fonts/truetype/freefont/FreeSans.ttf /usr/share/fonts/opentype/urw-base35/URWGothic-Book.otf \
  /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf

fonts:
	@for f in $(FONT_MARKERS); do test -f $$f || missing=1; done; \
	if [ -n "$$missing" ]; then { $(SUDO) apt-get install -y -q $(FONT_PACKAGES) || { $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(FONT_PACKAGES); }; } || \
	  echo "fonts: could not install $(FONT_PACKAGES); using matplotlib's bundled fonts" >&2; fi

train: venv fonts
ifeq ($(NPROC),1)
	$(BIN)/python -m train $(TRAIN_ARGS)
else
	$(BIN)/python -m paddle.distributed.launch --nproc_per_node $(NPROC) --log_dir $(LAUNCH_LOG_DIR) train/__main__.py $(TRAIN_ARGS)
endif

experiments: venv
	$(BIN)/python -m train.experiments $(if $(filter 1 true yes,$(QUICK)),--quick) $(EXPERIMENT_ARGS)

FORMAT ?= paddle

$(VENV)/.installed-onnx: $(VENV)/.installed requirements-onnx.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-onnx.txt -c constraints.txt
	touch $@

export: venv fonts $(if $(filter onnx,$(FORMAT)),$(VENV)/.installed-onnx)
	$(BIN)/python -m export --format $(FORMAT) $(EXPORT_ARGS)

# FRONT=nginx: nginx on PORT in front of sync workers, as the container runs (deploy/front.py; nginx
# buffers slow clients' bodies, and sync workers behind it are faster: README, Benchmarks).
FRONT ?=
SERVE_FRONT := $(filter nginx,$(FRONT))
serve: venv $(if $(SERVE_FRONT),nginx)
	PIDFILE=$(PIDFILE) $(if $(SERVE_FRONT),THREADS=$${THREADS:-1} BATCHING=$${BATCHING:-0} $(BIN)/python deploy/front.py,$(BIN)/gunicorn -c serve/gunicorn.conf.py 'serve.app:create_app()')

# SIGHUP to the master: each worker loads, verifies and warms the chosen version, then swaps
# (serve/service.py); a broken version is refused and the served one stays.
reload:
	@test -s $(PIDFILE) || { echo "reload: no $(PIDFILE): is 'make serve' running with PORT=$(PORT)?" >&2; exit 1; }
	kill -HUP $$(cat $(PIDFILE))

pin: venv
	@test -n "$(VERSION)" || { echo "pin: say which version: make pin VERSION=1" >&2; exit 1; }
	$(BIN)/python -m serve.model_store pin $(VERSION) --model-dir $(MODEL_DIR)
	$(MAKE) --no-print-directory reload

unpin: venv
	$(BIN)/python -m serve.model_store unpin --model-dir $(MODEL_DIR)
	$(MAKE) --no-print-directory reload

# nginx for deploy/front.py (the container's entry point; its tests, and the bench's FRONT=nginx) when
# missing. Debian's package starts its own server on port 80 when installed: stopped again at once.
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light || \
	  { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light; }; } && \
	  { $(SUDO) service nginx stop >/dev/null 2>&1 || true; }; }

test: venv chromium fonts nginx
	$(BIN)/python -m pytest $(PYTEST_ARGS)

soak: venv
	$(BIN)/python -m pytest -s $(PYTEST_ARGS) tests/soak_server.py

# The container, proven by a real run (scripts/container_test.py): slow the first time (base image,
# Paddle wheel), then cached. Its tools live in their own venv; the app's venv and `make test` are
# independent of it. CONTAINER_TEST_ARGS='--base-image python:3.11-slim' where a registry is reachable.
# Made by the .venv-% rule below.
CONTAINER_VENV := .venv-container
CONTAINER_TEST_ARGS ?=

# A side venv per heavy tool, apart from the app's: .venv-<tool> from requirements-<tool>.txt.
.venv-%/.installed: requirements-%.txt constraints.txt
	test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install -q --disable-pip-version-check -r $< -c constraints.txt
	touch $@

container-test: $(CONTAINER_VENV)/.installed
	$(CONTAINER_VENV)/bin/hadolint Dockerfile
	$(CONTAINER_VENV)/bin/python scripts/container_test.py $(CONTAINER_TEST_ARGS)
# The HTTP section drives the server with wrk (Debian package), installed here when missing.
BENCH_OUT ?= bench-results
BENCH_ARGS ?=
QUICK ?=

wrk:
	@command -v wrk >/dev/null 2>&1 || { echo "bench: installing wrk"; \
	  $(SUDO) apt-get install -y -qq wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq >/dev/null 2>&1 && \
	  $(SUDO) apt-get install -y -qq wrk >/dev/null 2>&1; } || echo "bench: could not install wrk; the HTTP section is skipped" >&2; }

bench: venv wrk nginx
	$(BIN)/python -m bench $(if $(QUICK),--quick) --out $(BENCH_OUT) $(BENCH_ARGS)

# A peer side by side (optional, heavy, never part of `make test`): TorchServe 0.12 and torch in their own
# venv, Java 17 from Debian when no Java 17+ is on the PATH. TORCHSERVE_ARGS passes options (--rounds, --duration ...).
# Made by the .venv-% rule (container section).
TORCHSERVE_VENV := .venv-torchserve
TORCHSERVE_ARGS ?=

java17:
	@java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])' || { echo "bench-torchserve: installing Java 17"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; }; }

bench-torchserve: venv wrk java17 $(TORCHSERVE_VENV)/.installed
	$(BIN)/python -m bench.torchserve --venv $(TORCHSERVE_VENV) --out $(BENCH_OUT) $(TORCHSERVE_ARGS)

clean:
	rm -rf runs .pytest_cache
