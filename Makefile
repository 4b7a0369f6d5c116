# Quickstart: `make serve` runs the local server; `make test` runs the whole suite. Both install first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install serve emulate test test-unit lint fmt typecheck node chromium synth clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[server,aws,dev,infra]'
	touch $@

node: node_modules/.installed chromium

# Debian's Chromium for the debug console's browser tests (playwright-core drives it); where apt is not
# available they are skipped, with the reason, instead of failing the build.
chromium:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; } || \
	  echo "chromium not installed: the debug console's browser tests will be skipped" >&2

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# With the debug console on (http://127.0.0.1:6001/debug, docs/debug-console.md).
serve: install
	SOCKLESS_DEBUG_CONSOLE=$${SOCKLESS_DEBUG_CONSOLE:-true} $(PY) -m local_server $(if $(CONFIG),--config $(CONFIG),)

# The Lambda code path on this machine: emulated API Gateway + Lambda, DynamoDB and SQS in moto.
emulate: install
	$(PY) -m local_server --emulate-lambda $(if $(CONFIG),--config $(CONFIG),)

test: install node
	bash scripts/test.sh

test-unit: install
	$(PY) -m pytest tests/unit -q

# The CDK app synthesized into cdk.out/ with the local npm CLI (docs/deploy.md). The Lambda bundle's wheels
# are downloaded once into $(WHEELHOUSE); after that, synth runs offline. CDK_ARGS='-c store=valkey' etc.
WHEELHOUSE ?= build/wheelhouse
CDK_ENV := CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=true NPM_CONFIG_UPDATE_NOTIFIER=false \
	JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 SOCKLESS_WHEELHOUSE=$(abspath $(WHEELHOUSE))

$(WHEELHOUSE)/.downloaded: pyproject.toml
	$(PY) -m cdk.components.bundle wheelhouse $(WHEELHOUSE)
	touch $@

synth: install node $(WHEELHOUSE)/.downloaded
	$(CDK_ENV) node_modules/.bin/cdk synth --quiet $(CDK_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Formats the code and applies ruff's safe fixes (import order and the like): what `make lint` checks.
fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
