# One entry point for set-up and checks. `make test` works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0

.PHONY: install test lint format clean tiny

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch first, pinned to the local CPU build, so nothing later pulls a CUDA build.
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest tests

lint: install
	$(PY) -m ruff check reminder_lightning tests scripts benchmarks
	$(PY) -m ruff format --check reminder_lightning tests scripts benchmarks

format: install
	$(PY) -m ruff format reminder_lightning tests scripts benchmarks
	$(PY) -m ruff check --fix reminder_lightning tests scripts benchmarks

tiny: install
	$(PY) -m reminder_lightning fit --config configs/tiny.yaml

clean:
	rm -rf $(VENV) runs lightning_logs wandb .pytest_cache
