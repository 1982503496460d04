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
EXPORT_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help venv train export serve test bench clean

help:
	@echo "make serve    - create the venv and serve the committed model on http://$(HOST):$(PORT)"
	@echo "make test     - create the venv and run the test suite"
	@echo "make train    - train the default model on MNIST (TRAIN_ARGS='--model lenet ...')"
	@echo "make export   - publish the newest run's best checkpoint into models/ (EXPORT_ARGS=...)"
	@echo "make bench    - measure training, model, preprocessing and HTTP speed into bench-results/ (QUICK=1: smoke run)"

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-onnx.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -r requirements-onnx.txt -c constraints.txt
	touch $@

venv: $(VENV)/.installed

train: venv
	$(BIN)/python -m train $(TRAIN_ARGS)

FORMAT ?= paddle

$(VENV)/.installed-onnx: $(VENV)/.installed requirements-onnx.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-onnx.txt -c constraints.txt
	touch $@

export: venv $(if $(filter onnx,$(FORMAT)),$(VENV)/.installed-onnx)
	$(BIN)/python -m export --format $(FORMAT) $(EXPORT_ARGS)

serve: venv
	$(BIN)/gunicorn -c serve/gunicorn.conf.py 'serve.app:create_app()'

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The HTTP section drives the server with wrk (Debian package), installed here when missing.
BENCH_OUT ?= bench-results
BENCH_ARGS ?=
QUICK ?=
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)

bench: venv
	@command -v wrk >/dev/null 2>&1 || { echo "bench: installing wrk"; \
	  $(SUDO) apt-get install -y -qq wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq >/dev/null 2>&1 && \
	  $(SUDO) apt-get install -y -qq wrk >/dev/null 2>&1; } || echo "bench: could not install wrk; the HTTP section is skipped" >&2; }
	$(BIN)/python -m bench $(if $(QUICK),--quick) --out $(BENCH_OUT) $(BENCH_ARGS)

clean:
	rm -rf runs .pytest_cache
