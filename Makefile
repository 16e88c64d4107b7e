# The two commands in the README: `make demo` (install, then run seccomp-sync on a local control
# plane) and `make test` (install, then the whole suite). .ci/run calls `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

.PHONY: install system-deps demo demo-stop test lint unit bench clean

install: system-deps $(VENV)/.installed

system-deps:
	@scripts/install-system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: install
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo

demo-stop:
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo stop

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: install lint
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

bench: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
