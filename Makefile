# fashionseg: `make demo` runs the main job on synthetic data, `make test` runs the tests.
# Both install first (into .venv) so each works alone on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch/torchvision pins for the reference machine; see constraints.txt
CONSTRAINTS ?= constraints.txt
STAMP := $(VENV)/.installed
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo serve test test-fast train sweep tensorboard bench gpu-check results docs lint format clean

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(CONSTRAINTS) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[dev,convert,sweep,docs,demo,runtime,export]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with dev tools (idempotent)

demo: install ## train + test + predict on the embedded synthetic data (CPU, ~7 min)
	$(PY) -m fashionseg.train experiment=demo $(ARGS)

serve: install ## demo page on your photos: make serve ARGS="ckpt=RUN/checkpoints/last.ckpt [port=7860]"
	$(PY) -m fashionseg.serve $(ARGS)

test: install ## run the test suite
	$(PY) -m pytest -q -n auto $(ARGS)

test-fast: install ## run the tests that train nothing and read no ../shared data
	$(PY) -m pytest -q -n auto -m "not slow and not shared" $(ARGS)

train: install ## train: make train ARGS="task=clothing data=fashion data.root=DIR"
	$(PY) -m fashionseg.train $(ARGS)

sweep: install ## multirun: make sweep ARGS="optimizer.lr=1e-2,1e-3 data.batch_size=2,10"
	$(PY) -m fashionseg.train -m $(ARGS)

tensorboard: install ## serve TensorBoard on the logs/ directory
	$(VENV)/bin/tensorboard --logdir logs $(ARGS)

bench: install ## benchmarks: make bench ARGS="--size small" (see docs/benchmarks.md)
	$(PY) -m fashionseg.bench $(ARGS)

gpu-check: install ## on a CUDA GPU: GPU benchmark + short seed_report run + gpu_bench (a-c) -> gpu_check/
	$(PY) -m fashionseg.gpu_check $(ARGS)

results: install ## train + test the results rows on ../shared/data/ccp-fashion600 (hours on a CPU)
	$(PY) -m fashionseg.report --out results $(ARGS)

docs: install ## build the docs site into site/ (strict: a broken link or missing page fails)
	$(VENV)/bin/mkdocs build --strict --site-dir site

lint: install ## ruff check + format check
	$(VENV)/bin/ruff check fashionseg tests notebooks
	$(VENV)/bin/ruff format --check fashionseg tests notebooks

format: install ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix fashionseg tests notebooks
	$(VENV)/bin/ruff format fashionseg tests notebooks

clean: ## remove caches and build outputs (keeps .venv, logs/ and data/)
	rm -rf build dist site *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
