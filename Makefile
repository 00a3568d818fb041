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
