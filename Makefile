# cattlepose developer targets. `make setup` is implied by every target that needs the venv.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
CLI     := .venv/bin/cattlepose
STAMP   := .venv/.setup-stamp
CONFIG  ?= configs/default.yaml
RUN     ?= runs/default
DATA    ?= data/synth
export OMP_NUM_THREADS ?= 2

.PHONY: setup test test-slow lint format

setup: $(STAMP)

# Re-installs only when pyproject.toml changes (the stamp is older than it).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests

format: $(STAMP)
	$(PY) -m ruff format src tests
	$(PY) -m ruff check --fix src tests
