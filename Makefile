# `make test` sets up a fresh machine and runs the whole suite: a virtual environment, the CPU build of torch
# (installed first, so that nothing pulls a CUDA build), the package with its test extra at the checked versions.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test install bench clean

test: install
	$(PY) -m pytest tests

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

bench: install
	$(PY) benchmarks/bench_model.py

clean:
	rm -rf $(VENV) .pytest_cache
