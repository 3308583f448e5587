# `make demo` sets up a fresh machine and runs the project's main job on OphVL-mini (see ophclip_train/demo.py);
# `make test` sets up a fresh machine and runs the whole suite. Both create a virtual environment and install the CPU
# build of torch first (so that nothing pulls a CUDA build), then the package at the checked versions.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= ophclip-demo
DEMO_ARGS ?=

.PHONY: test conformance demo install install-train bench clean browser

test: install browser
	$(PY) -m pytest tests

# headless Chromium for tests/test_app_browser.py (Debian's chromium + chromium-driver; that test skips with the
# reason where they cannot be installed)
browser:
	sh tests/install_browser.sh

# transformers' own common model/processor tests on OphCLIP (also part of `make test`); the first run fetches the
# transformers source distribution with pip into ~/.cache/ophclip/conformance (or $$OPHCLIP_CONFORMANCE_CACHE).
conformance: install
	$(PY) -m pytest tests/conformance

demo: install-train
	$(PY) -m ophclip_train.demo --output-dir $(DEMO_DIR) --overwrite $(DEMO_ARGS)

install: $(VENV)/.installed

install-train: $(VENV)/.installed-train

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	touch $@

$(VENV)/.installed: $(VENV)/.torch setup.cfg constraints.txt pyproject.toml
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

$(VENV)/.installed-train: $(VENV)/.torch setup.cfg constraints.txt pyproject.toml
	$(PY) -m pip install --quiet -c constraints.txt -e ".[train]"
	touch $@

bench: install
	$(PY) benchmarks/bench_model.py

clean:
	rm -rf $(VENV) .pytest_cache
