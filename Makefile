# sweeplab: `make help` lists the targets. Every target sets up .venv first when needed.
# Hydra overrides go in ARGS, e.g.  make train ARGS="data=planar model.depth=3 optim.lr=0.05"

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=
PORT    ?= 5000
JOBS    ?= 1
DB      ?=
# make server listens on loopback unless HOST= is given on the command line: an exported
# $HOST (tcsh sets one to the machine's name) must not open the server to the network.
ifneq ($(origin HOST),command line)
HOST    := 127.0.0.1
endif

.DEFAULT_GOAL := help
.PHONY: help setup train sweep experiment rerun ui dashboard server test test-slow test-e2e lint bench readme-numbers clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

# The venv is rebuilt when pyproject.toml or the lock changes; versions come from the lock.
$(STAMP): pyproject.toml requirements.lock
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "sweeplab needs Python 3.11+, $(PY) is " + sys.version.split()[0])'
	@echo "setting up $(VENV) from requirements.lock ..."
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev,server,bench]'
	@touch $@

setup: $(STAMP) ## create .venv and install sweeplab with the locked versions

train: $(STAMP) ## train one network and track it in MLflow (ARGS="hydra overrides")
	$(BIN)/python -m sweeplab.train $(ARGS)

sweep: $(STAMP) ## run the Optuna sweep in conf/sweep/ (ARGS="sweep.n_trials=60", JOBS=2)
	$(BIN)/python -m sweeplab.sweep sweep.n_jobs=$(JOBS) $(ARGS)

experiment: $(STAMP) ## run a study (NAME=course1_week4); its tables go to experiments/NAME/results.md (git-ignored)
	@test -n "$(NAME)" -a -f experiments/$(NAME)/study.py || { echo "usage: make experiment NAME=<folder in experiments/ with a study.py> [ARGS=\"--help\"]"; exit 2; }
	$(BIN)/python -m experiments.$(NAME).study $(ARGS)

rerun: $(STAMP) ## rerun a logged run from its config and compare (RUN=<run id>, ARGS=overrides)
	@test -n "$(RUN)" || { echo "usage: make rerun RUN=<mlflow run id> [ARGS=\"train.epochs=5000\"]"; exit 2; }
	$(BIN)/python -m sweeplab.cli.rerun $(RUN) $(ARGS)

ui: $(STAMP) ## open the MLflow UI on 127.0.0.1:5000 over the local store (PORT=5001 for another)
	$(BIN)/python -m sweeplab.cli.ui --port $(PORT)

# Its own default port (optuna-dashboard's 8080), so that it runs beside `make ui`; PORT=
# on the command line (or in the environment) chooses another, as for make ui.
dashboard: $(STAMP) ## optuna-dashboard over the sweep's study on 127.0.0.1:8080, live (PORT=, ARGS="--storage URL")
	$(BIN)/python -m sweeplab.cli.dashboard --port $(if $(filter command line environment,$(origin PORT)),$(PORT),8080) $(ARGS)

# The command is not echoed: DB may hold a password.
server: $(STAMP) ## MLflow tracking server for a team on 127.0.0.1:5000 (PORT=, HOST=, DB=postgresql+psycopg://...)
	@$(BIN)/python -m sweeplab.cli.server --port $(PORT) --host $(HOST) $(if $(DB),--db '$(DB)')

test: $(STAMP) ## run the test suite (fast tests; the slow ones: make test-slow)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP) ## run the slow integration suites (CI runs them too)
	$(BIN)/python -m pytest -q -m slow

test-e2e: $(STAMP) ## browser tests of the MLflow UI (needs Debian's chromium; CI installs it)
	$(BIN)/python -m pytest -q -m e2e

bench: $(STAMP) ## speed as ratios against references (ARGS="--quick", "--only peer": time to quality vs Optuna + scikit-learn)
	$(BIN)/python -m sweeplab.bench $(ARGS)

# Maintainers: the README's sweep figures come from here, never from a hand edit.
readme-numbers: $(STAMP) ## rerun make sweep's sweep in a temp folder, rewrite README.md's figures (ARGS=--help)
	$(BIN)/python -m experiments.readme_numbers $(ARGS)

lint: $(STAMP) ## ruff over src, tests and experiments
	$(BIN)/ruff check src tests experiments

clean: ## remove run outputs (keeps .venv, mlflow.db and mlruns/: see clean-store)
	rm -rf outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

clean-store: ## delete the local MLflow store and Optuna journal (all runs!)
	rm -rf mlflow.db mlruns .sweeplab
