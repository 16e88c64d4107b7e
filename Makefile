# The two commands in the README: `make demo` (install, then run seccomp-sync on a local control
# plane and a real node) and `make test` (install, then the whole suite). .ci/run calls
# `make test`. `make image` builds the agent image from the Dockerfile without Docker.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
# pytest-xdist workers for `make test`, each with its own control plane (tests/parallel.py). The
# tests mostly wait on API servers, agents and kubelets, so 3 beat 2 on a 2-core machine.
TEST_WORKERS ?= 3

.PHONY: install system-deps demo demo-light demo-stop image test lint unit bench clean

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

# Without a node or an image: one agent as a plain process (machines that cannot run a kubelet).
demo-light: install
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo light

demo-stop:
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo stop

# The agent image as an OCI archive (path printed; cached by a hash of its inputs).
image: system-deps
	@scripts/build-image

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The control plane, Helm and the agent image are built (unless cached: a cold build takes minutes)
# before pytest, so that their progress and timing show: pytest-xdist's workers print nothing.
test: install lint
	tests/cluster/build >/dev/null
	tests/helm/build >/dev/null
	scripts/build-image >/dev/null
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

bench: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
