VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install run test unit lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## run the whole system locally: Redis (reachable or private), scheduler, worker, example job
run: install
	$(VENV)/bin/rsched dev

## the full test suite against private redis-server / PostgreSQL started by fixtures
test: install
	$(PY) -m pytest -q -p no:cacheprovider

unit: install
	$(PY) -m pytest -q tests/unit

lint: install
	$(VENV)/bin/ruff check rsched api tests load
	$(VENV)/bin/mypy rsched

bench: install
	$(PY) -m load.bench --help

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
