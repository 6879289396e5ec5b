# One command to run the stack, one to test it. Needs only Python 3.11+ and make:
# uv is bootstrapped into .tools/ and installs everything else from the lock file.

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
# The interpreter itself, not a version manager's shim (uv would rebuild .venv on every sync).
export UV_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null)
# Bytecode is written at install time: where PYTHONDONTWRITEBYTECODE is set, every process
# started (by `saas dev`, and by the tests: hundreds) would otherwise compile every module it
# imports, about 2.5 s of CPU each, plus as much again for a Temporal worker's build id.
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install dev test test-unit test-integration test-e2e bench lint asyncapi clean

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml libs/*/pyproject.toml services/*/pyproject.toml
	$(UV) sync --locked --all-packages
	@touch $@

install: $(VENV)/.synced

dev: install
	$(VENV)/bin/saas dev

test: install
	$(VENV)/bin/pytest

test-unit: install
	$(VENV)/bin/pytest tests/unit

test-integration: install
	$(VENV)/bin/pytest tests/integration

test-e2e: install
	$(VENV)/bin/pytest tests/e2e

# Figures, not pass/fail: see docs/benchmarks.md for what they mean and the last recorded run.
bench: install
	$(VENV)/bin/python bench/events.py --events 20000 --compare --rounds 2
	$(VENV)/bin/python bench/events.py --events 20000 --rate 2000
	$(VENV)/bin/python bench/identity.py
	$(VENV)/bin/python bench/identity.py --via gateway
	$(VENV)/bin/python bench/gateway.py
	$(VENV)/bin/python bench/provisioning.py
	$(VENV)/bin/python bench/tenant_reads.py

asyncapi: install
	$(VENV)/bin/saas events asyncapi -o docs/asyncapi.json

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(TOOLS) $(VENV) .pytest_cache .ruff_cache
