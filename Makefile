# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# dvc runs `python stages/...`: put the venv first so that python is the one with ganforge installed.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install run synthesize invert superres translate test test-fast lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# the quick start: download -> evaluator -> train -> sample -> evaluate, then the metrics table. The
# synthesize stage (a 60,000-image synthetic data set and three classifier trainings for CAS, minutes more
# on a CPU) is the data-augmentation application: `dvc repro` runs it too, `make synthesize` alone.
run: install
	dvc repro evaluate
	python -m ganforge.report

synthesize: install
	dvc repro synthesize

# the generator as a prior for real images: invert, inpaint and edit the first invert.n test images (after
# the generation pipeline's train stage; a few CPU-minutes)
invert: install
	dvc repro invert inpaint edit

# x4 super-resolution: a pipeline of its own (pipelines/superres/dvc.yaml), so a plain `dvc repro` leaves it
# out: for each set of superres.sets (photos, mnist) download -> judge -> psnr -> gan -> upscale -> evaluate,
# then the tables (about an hour on a 2-core CPU, most of it the photos' trainings)
superres: install
	dvc repro pipelines/superres/dvc.yaml
	@for t in results/superres/*/evaluate/table.tsv; do echo "== $$t"; column -t "$$t"; done

# image-to-image translation: a pipeline of its own (pipelines/translate/dvc.yaml): for each set of
# translate.sets download -> judge (one per domain), for each model of translate.models (pix2pix, CycleGAN)
# train -> translate -> evaluate, then the tables (each model beside the identity baseline)
translate: install
	dvc repro pipelines/translate/dvc.yaml
	@for t in results/translate/*/evaluate/table.tsv; do echo "== $$t"; column -t "$$t"; done

lint: install
	ruff check .

# One pytest worker per CPU (pytest-xdist): most tests run one-threaded subprocesses (stages, dvc, mlflow
# servers), so the suite leaves cores idle without it. --dist loadfile keeps each test file on one worker, so a
# module's fixtures (a trained model, a store) are built once. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= auto
PYTEST := pytest -n $(PYTEST_WORKERS) --dist loadfile

test: lint
	$(PYTEST)

# the fast tier, while working: everything but the whole-pipeline and server tests (under 3 minutes)
test-fast: lint
	$(PYTEST) -m "not slow"

clean:
	rm -rf $(VENV) .venv-dvc .pytest_cache .ruff_cache

# --- team use: CI retraining, the tracking server, comparing runs ------------------------------------------
# `make retrain`: what CI runs (scripts/retrain.sh): pull, reproduce, push, report in results/retrain/.
# `make mlflow-server`: the team's tracking server on this machine, http://127.0.0.1:5000; point runs at it
# with MLFLOW_TRACKING_URI=http://127.0.0.1:5000 and a login (MLFLOW_TRACKING_USERNAME / _PASSWORD). SQLite allows one writer at a time, so the server runs
# one worker process; a team server would use PostgreSQL (--backend-store-uri postgresql://...) and object
# storage (--artifacts-destination s3://...) instead, and may then raise MLFLOW_WORKERS.
# `make ui`: browse the same store read-only (metadata opened with SQLite mode=ro, artifacts not proxied).
# `make compare`: a table of the runs of the last training's experiment, best fid_ratio first
# (ARGS="--experiment NAME --metric kid_mean" to choose).
MLFLOW_HOST    ?= 127.0.0.1
MLFLOW_PORT    ?= 5000
MLFLOW_UI_PORT ?= 5001
MLFLOW_WORKERS ?= 1
MLFLOW_STORE   := $(CURDIR)/mlflow.db
ARTIFACTS      := $(CURDIR)/mlartifacts

.PHONY: retrain mlflow-server ui compare lint-workflows

# retrain.sh builds .venv-dvc (the pinned dvc that alone sees the remote's keys) before the project's install
retrain:
	scripts/retrain.sh

# Both print the link that opens the training runs table (MLflow 3 would otherwise open its GenAI view).
UI_LINK = MLFLOW_TRACKING_URI='sqlite:///file:$(MLFLOW_STORE)?mode=ro&uri=true' python scripts/ui_link.py

# The team server requires authentication (MLflow's basic-auth app): every request but /health needs a user
# and password (clients: MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD), so no local process can
# move the champion alias or upload next to a model's python_model.pkl without an account allowed to.
# Users and permissions live in MLFLOW_AUTH_DB beside the store. The first start creates the admin user
# (MLFLOW_AUTH_ADMIN_USERNAME, default admin) with the password in MLFLOW_AUTH_ADMIN_PASSWORD, which it
# then requires; later starts ignore both. Other users, created by the admin, read everything and write
# only what they created or were granted (default_permission READ). No credential is written anywhere but
# the auth database (hashed); the config file holds paths and names only (the app comes with the project's
# install: pyproject's mlflow[auth]). MLFLOW_FLASK_SERVER_SECRET_KEY (CSRF of
# the UI's forms) is random per start unless set. A checked password is cached for 60 s (each check is a
# PBKDF2, ~0.2 s here: a model download of 80 files took 13 s without it); a password changed or a user
# deleted through the API takes effect at once on the worker that handled it, within 60 s on the others.
MLFLOW_AUTH_DB  = $(MLFLOW_STORE)-auth.db
MLFLOW_AUTH_INI = $(MLFLOW_STORE)-auth.ini

mlflow-server: install
	@test -f $(MLFLOW_AUTH_DB) || test -n "$$MLFLOW_AUTH_ADMIN_PASSWORD" || { echo "error: the tracking \
	server requires authentication: set MLFLOW_AUTH_ADMIN_PASSWORD for its first start, which creates the \
	admin user (MLFLOW_AUTH_ADMIN_USERNAME, default admin) in $(MLFLOW_AUTH_DB); clients then log in with \
	MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" >&2; exit 2; }
	@printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///%s\nadmin_username = admin\n%s\n' \
	  '$(MLFLOW_AUTH_DB)' 'auth_cache_ttl_seconds = 60' > $(MLFLOW_AUTH_INI)
	@test ! -f $(MLFLOW_STORE) || $(UI_LINK) http://$(MLFLOW_HOST):$(MLFLOW_PORT)
	@echo "mlflow server --app-name basic-auth on http://$(MLFLOW_HOST):$(MLFLOW_PORT) (users: $(MLFLOW_AUTH_DB))"
	@MLFLOW_AUTH_CONFIG_PATH=$(MLFLOW_AUTH_INI) MLFLOW_FLASK_SERVER_SECRET_KEY="$${MLFLOW_FLASK_SERVER_SECRET_KEY:-$$(\
	  $(PY) -c 'import secrets; print(secrets.token_hex(32))')}" exec mlflow server --app-name basic-auth \
	  --host $(MLFLOW_HOST) --port $(MLFLOW_PORT) --workers $(MLFLOW_WORKERS) \
	  --backend-store-uri sqlite:///$(MLFLOW_STORE) --artifacts-destination $(ARTIFACTS)

# Read-only: the metadata store is opened with SQLite mode=ro, and artifacts are not served through the
# proxy (--no-serve-artifacts), so nothing can upload or delete under mlartifacts/ (a registered model's
# python_model.pkl runs as code when someone loads the champion). The UI reads the artifacts of runs logged
# to this project's store from their local paths; runs logged through `make mlflow-server` keep
# mlflow-artifacts:/ locations, which only that server serves.
ui: install
	@test -f $(MLFLOW_STORE) || { echo "error: no $(MLFLOW_STORE) yet: run the pipeline (make run) first" >&2; exit 1; }
	@$(UI_LINK) http://$(MLFLOW_HOST):$(MLFLOW_UI_PORT)
	mlflow ui --host $(MLFLOW_HOST) --port $(MLFLOW_UI_PORT) --workers 1 \
	  --backend-store-uri 'sqlite:///file:$(MLFLOW_STORE)?mode=ro&uri=true' --no-serve-artifacts

compare: install
	python scripts/compare.py $(ARGS)

lint-workflows: install
	scripts/lint-workflows.sh

# --- GPU check (bench/gpu_check.sh) ------------------------------------------------------------------------
# `make wheels`: what a GPU machine that has torch but no network lacks, in wheels/ (git-ignored), carried
# there with the working tree (64 MiB at most): the non-torch dependencies it misses as linux x86_64 wheels
# for CPython $(WHEELS_PY) (the H200 image's python; `make wheels WHEELS_PY=3.11` for another), and the MNIST
# download cache (the download stage reads it instead of the network). mlflow-skinny + SQLAlchemy + Alembic
# (the sqlite tracking store) stand in for mlflow, whose UI and server dependencies would not fit.
# numpy, scipy, pillow and pandas are not fetched: the GPU image has them, and they alone exceed 64 MiB.
# antlr4-python3-runtime (needed by dvc's hydra-core) exists only as an sdist: it is built into a wheel here.
WHEELS_PY  ?= 3.12
WHEEL_DEPS := 'dvc>=3.50' 'mlflow-skinny>=3.17' sqlalchemy alembic 'pydantic>=2.5' 'typer>=0.12' 'rich>=13' pyyaml
GANFORGE_CACHE ?= $(HOME)/.cache/ganforge

.PHONY: wheels
wheels: install
	@test -f $(GANFORGE_CACHE)/mnist/train-images-idx3-ubyte || { echo "error: MNIST is not in the download \
	cache $(GANFORGE_CACHE): run 'make run' (or 'dvc repro download') first" >&2; exit 1; }
	rm -rf wheels && mkdir wheels
	$(PY) -m pip wheel -q --no-deps --wheel-dir wheels 'antlr4-python3-runtime==4.9.3'
	$(PY) -m pip download -q --dest wheels --find-links wheels --only-binary=:all: --implementation cp \
	  --python-version $(WHEELS_PY) --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 --platform linux_x86_64 $(WHEEL_DEPS)
	tar czf wheels/mnist-cache.tar.gz --exclude=.lock -C $(GANFORGE_CACHE) mnist
	@echo "$$(ls wheels/*.whl | wc -l) wheels + MNIST: $$(du -sm wheels | cut -f1) MiB in wheels/ (a device run carries 64 MiB)"
