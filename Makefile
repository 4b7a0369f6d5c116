# Quickstart: `make serve` runs the local server; `make test` runs the whole suite. Both install first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install install-server serve emulate cost test test-unit lint fmt hooks typecheck node chromium synth clean

# Two installs into one venv: `make serve` needs only the server extra (~70 MB); `make test`, `make emulate` and the
# CDK targets need everything (~950 MB: moto, boto3, the CDK, mypy...). pip's output goes to $(VENV)/install.log,
# shown only when pip fails; the full install also stamps the server one.
install: $(VENV)/.installed
install-server: $(VENV)/.installed-server

PIP_INSTALL = $(PY) -m pip install --disable-pip-version-check
QUIETLY = > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log >&2; echo "pip failed (log: $(VENV)/install.log)" >&2; exit 1; }

$(VENV)/.installed-server: pyproject.toml
	@echo "Installing the server into $(VENV) (first run only)..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP_INSTALL) -e '.[server]' $(QUIETLY)
	@touch $@

$(VENV)/.installed: pyproject.toml
	@echo "Installing sockless with every extra (server, AWS, dev, CDK) into $(VENV)..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP_INSTALL) -e '.[server,aws,dev,infra]' $(QUIETLY)
	@touch $@ $(VENV)/.installed-server

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

# With the debug console on (docs/debug-console.md). SOCKLESS_PORT=6002 make serve etc. change the ports;
# ARGS='...' adds command-line flags (python -m local_server --help).
serve: install-server
	@SOCKLESS_DEBUG_CONSOLE=$${SOCKLESS_DEBUG_CONSOLE:-true} exec $(PY) -m local_server \
	  $(if $(CONFIG),--config $(CONFIG),) $(ARGS)

# The Lambda code path on this machine: emulated API Gateway + Lambda, DynamoDB and SQS in moto. Like serve: the
# debug console on, one banner; the functions' CloudWatch EMF documents hidden (ARGS=--show-emf prints them).
emulate: install
	@SOCKLESS_DEBUG_CONSOLE=$${SOCKLESS_DEBUG_CONSOLE:-true} exec $(PY) -m local_server --emulate-lambda \
	  $(if $(CONFIG),--config $(CONFIG),) $(ARGS)

# What a month on AWS costs for a workload, line by line (docs/cost.md): make cost ARGS='--connections 1000
# --deliveries-per-day 1000000'; ARGS=--help lists the workload and stack options.
cost: install
	@exec $(PY) -m cost $(ARGS)

test: install node
	bash scripts/test.sh

test-unit: install
	$(PY) -m pytest tests/unit -q

# The CDK app synthesized into cdk.out/ with the local npm CLI (docs/deploy.md). The Lambda bundle's wheels
# are downloaded once into $(WHEELHOUSE) (again when the pins or the runtime change); after that, synth runs
# offline. CDK_ARGS='-c store=valkey' etc.
WHEELHOUSE ?= build/wheelhouse
CDK_ENV := CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=true NPM_CONFIG_UPDATE_NOTIFIER=false \
	JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 SOCKLESS_WHEELHOUSE=$(abspath $(WHEELHOUSE))

$(WHEELHOUSE)/.downloaded: pyproject.toml cdk/components/functions.py
	$(PY) -m cdk.components.bundle wheelhouse $(WHEELHOUSE)
	touch $@

synth: install node $(WHEELHOUSE)/.downloaded
	$(CDK_ENV) node_modules/.bin/cdk synth --quiet $(CDK_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Installs scripts/commit-msg as this clone's commit-msg hook (subjects of at most 72 characters).
hooks:
	install -D -m 755 scripts/commit-msg "$$(git rev-parse --git-path hooks)/commit-msg"

# Formats the code and applies ruff's safe fixes (import order and the like): what `make lint` checks.
fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
