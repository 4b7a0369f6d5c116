# Quickstart: `make serve` runs the local server; `make test` runs the whole suite. Both install first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install serve emulate test test-unit lint typecheck node clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[server,aws,dev]'
	touch $@

node: node_modules/.installed

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

serve: install
	$(PY) -m local_server $(if $(CONFIG),--config $(CONFIG),)

# The Lambda code path on this machine: emulated API Gateway + Lambda, DynamoDB and SQS in moto.
emulate: install
	$(PY) -m local_server --emulate-lambda $(if $(CONFIG),--config $(CONFIG),)

test: install node
	bash scripts/test.sh

test-unit: install
	$(PY) -m pytest tests/unit -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
