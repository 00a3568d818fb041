# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# dvc runs `python stages/...`: put the venv first so that python is the one with ganforge installed.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install run test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	dvc repro

lint: install
	ruff check .

test: lint
	pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# --- team use: CI retraining, the tracking server, comparing runs ------------------------------------------
# `make retrain`: what CI runs (scripts/retrain.sh): pull, reproduce, push, report in results/retrain/.
# `make mlflow-server`: the team's tracking server on this machine, http://127.0.0.1:5000; point runs at it
# with MLFLOW_TRACKING_URI=http://127.0.0.1:5000. SQLite allows one writer at a time, so the server runs
# one worker process; a team server would use PostgreSQL (--backend-store-uri postgresql://...) and object
# storage (--artifacts-destination s3://...) instead, and may then raise MLFLOW_WORKERS.
# `make ui`: browse the same store with the metadata opened read-only (SQLite mode=ro).
# `make compare`: a table of the runs of the last training's experiment, best fid_ratio first
# (ARGS="--experiment NAME --metric kid_mean" to choose).
MLFLOW_HOST    ?= 127.0.0.1
MLFLOW_PORT    ?= 5000
MLFLOW_UI_PORT ?= 5001
MLFLOW_WORKERS ?= 1
MLFLOW_STORE   := $(CURDIR)/mlflow.db
ARTIFACTS      := $(CURDIR)/mlartifacts

.PHONY: retrain mlflow-server ui compare lint-workflows

retrain: install
	RETRAIN_SETUP=false scripts/retrain.sh

mlflow-server: install
	mlflow server --host $(MLFLOW_HOST) --port $(MLFLOW_PORT) --workers $(MLFLOW_WORKERS) \
	  --backend-store-uri sqlite:///$(MLFLOW_STORE) --artifacts-destination $(ARTIFACTS)

ui: install
	@test -f $(MLFLOW_STORE) || { echo "error: no $(MLFLOW_STORE) yet: run the pipeline (make run) first" >&2; exit 1; }
	mlflow ui --host $(MLFLOW_HOST) --port $(MLFLOW_UI_PORT) --workers 1 \
	  --backend-store-uri 'sqlite:///file:$(MLFLOW_STORE)?mode=ro&uri=true' --artifacts-destination $(ARTIFACTS)

compare: install
	python scripts/compare.py $(ARGS)

lint-workflows: install
	scripts/lint-workflows.sh
