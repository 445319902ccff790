# kanalysis: every target installs what it needs into .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help venv run synthetic test test-slow lint format bench figures lab clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install kanalysis with its dev extras

run: $(STAMP) ## execute every notebook on the bundled synthetic cohort (reports/)
	$(BIN)/kanalysis run --out reports $(RUN_ARGS)

synthetic: $(STAMP) ## regenerate the bundled synthetic cohorts in data/synthetic/
	@for d in single serial maintenance clinic; do $(BIN)/kanalysis synth --design $$d --out data/synthetic/$$d || exit 1; done

test: $(STAMP) ## the fast test suite (what CI runs)
	$(BIN)/python -m pytest -m "not slow" -n $(PYTEST_WORKERS) -q

test-slow: $(STAMP) ## slow studies (coverage, type I error) and the JupyterLab browser test
	$(BIN)/python -m pip install --quiet -e '.[dev,lab,browser]'
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
	  { apt-get install -y chromium chromium-driver || sudo apt-get install -y chromium chromium-driver; }
	$(BIN)/python -m pytest -m slow -q

lint: $(STAMP) ## ruff
	$(BIN)/ruff check src tests benchmarks notebooks

format: $(STAMP) ## ruff format and import sorting
	$(BIN)/ruff check --fix src tests benchmarks notebooks

bench: $(STAMP) ## speed benchmark against statsmodels (and R where installed)
	$(BIN)/python benchmarks/bench_models.py

figures: $(STAMP) ## regenerate the paper figures into figures/
	$(BIN)/kanalysis figures --out figures

lab: $(STAMP) ## open JupyterLab: notebooks/*.py open as notebooks, kernel "Python 3 (kanalysis)"
	$(BIN)/python -m pip install --quiet -e '.[dev,lab]'
	$(BIN)/python -m kanalysis.runner.lab
	$(BIN)/jupyter lab notebooks/ $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

clean: ## remove generated outputs (not the virtual environment)
	rm -rf reports/ .pytest_cache .ruff_cache
