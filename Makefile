# tokenops.rotation: `make demo` and `make test` work from a fresh clone; everything they need
# is installed here (a virtual environment in .venv, the collection in .build).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
BUILD := .build
INSTALLED := $(BUILD)/installed
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/$(INSTALLED)
export TOKENOPS_COLLECTIONS_PATH := $(CURDIR)/$(INSTALLED)
export ANSIBLE_LOCAL_TEMP := $(CURDIR)/$(BUILD)/ansible-tmp
export PATH := $(CURDIR)/$(BIN):$(PATH)
# pytest-xdist workers: one per core (`make test TEST_WORKERS=0` runs in one process). Every run lists its 25
# slowest tests, so a test that became slow shows at once.
TEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=25
# Sanity and lint write caches under HOME (ansible-test's get-pip, ansible-lint's ansible-compat); they get one of
# their own, so the tests' guard on the real HOME (TOKENOPS_TEST_HOME_GUARD, see tests/conftest.py) sees only pytest.
TOOLS_HOME := $(CURDIR)/$(BUILD)/tools-home

.PHONY: all venv collection interop system-packages ee demo test test-quick test-busy unit integration sanity lint docs clean

all: test

$(BIN)/.installed: requirements.txt tests/requirements.txt tests/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r tests/requirements.txt -c tests/constraints.txt
	touch $@

venv: $(BIN)/.installed

# Build the collection as Galaxy would, and install that artifact: the demo and the
# integration tests run what a user would install.
collection: venv
	rm -rf $(BUILD)/dist $(INSTALLED)
	mkdir -p $(BUILD)/dist $(INSTALLED) $(ANSIBLE_LOCAL_TEMP)
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD)/dist . >/dev/null
	$(BIN)/ansible-galaxy collection install --force -p $(INSTALLED) $(BUILD)/dist/tokenops-rotation-*.tar.gz >/dev/null

# Interledger's own @interledger/http-signature-utils from the npm registry, for the tests that check the
# Open Payments signer against it in both directions (they skip, saying why, where node or npm is missing).
INTEROP := tests/interop/node
$(INTEROP)/node_modules/.installed: $(INTEROP)/package.json $(INTEROP)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(INTEROP) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "npm not found: the Open Payments interop tests will be skipped"; \
	fi

interop: $(INTEROP)/node_modules/.installed

# Debian packages some tests need (tests/system-packages.txt): installed where this runs as root with
# apt-get; anywhere else the tests that need them skip, saying why.
SYSTEM_PACKAGES := $(shell sed -e 's/\#.*//' tests/system-packages.txt)
$(BUILD)/.system-packages: tests/system-packages.txt
	@mkdir -p $(BUILD)
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian packages for the tests: $$missing"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; } \
			>$(BUILD)/system-packages.log 2>&1 || echo "could not install $$missing (see $(BUILD)/system-packages.log): the tests that need them skip"; \
	else \
		echo "not installed, and no root apt-get here: $$missing; the tests that need them skip"; \
	fi
	@touch $@

system-packages: $(BUILD)/.system-packages

# The execution environment's build context (execution-environment.yml); `podman build` or
# `ansible-builder build` turns it into the image AWX runs.
ee: collection
	$(BIN)/ansible-builder create --context $(BUILD)/ee

demo: collection
	$(PY) hacking/demo.py

# ansible-test sanity on a copy of the tree under ansible_collections/tokenops/rotation/.
sanity: venv
	$(PY) hacking/sanity.py

lint: collection
	$(BIN)/ansible-lint --profile production --offline roles playbooks

unit: venv interop system-packages
	$(PYTEST) tests/unit

integration: collection interop system-packages
	$(PYTEST) tests/integration

# The edit loop: the unit tests and the simulators' own tests, no playbooks, no OpenBao (about a minute on 2 cores).
test-quick: venv interop
	$(PYTEST) tests/unit

# Sanity and lint run beside pytest (most of sanity is pip filling ansible-test's virtual
# environments, time the tests' waiting on servers leaves free); their output follows pytest's, and
# the last line says how each of the three ended.
test: collection interop system-packages
	@rm -f $(BUILD)/sanity.log
	@echo "ansible-test sanity and ansible-lint run in the background; their output follows pytest's"
	@mkdir -p $(TOOLS_HOME)
	@( export HOME=$(TOOLS_HOME); { $(PY) hacking/sanity.py; echo "sanity=$$?"; \
	     $(BIN)/ansible-lint --profile production --offline roles playbooks; echo "lint=$$?"; } > $(BUILD)/sanity.log 2>&1 ) & \
	tests=0; $(PYTEST) tests/unit tests/integration || tests=$$?; \
	wait; echo "==== ansible-test sanity, then ansible-lint (ran beside pytest) ===="; \
	grep -v '^sanity=\|^lint=' $(BUILD)/sanity.log; \
	sanity=$$(sed -n 's/^sanity=//p' $(BUILD)/sanity.log); lint=$$(sed -n 's/^lint=//p' $(BUILD)/sanity.log); \
	echo "make test: sanity rc $${sanity:-missing}, lint rc $${lint:-missing}, pytest rc $$tests"; \
	[ "$$sanity" = 0 ] && [ "$$lint" = 0 ] && [ "$$tests" = 0 ]

# The same, while busy loops keep every core loaded (the harness starts and stops them): a loaded CI machine.
test-busy:
	TOKENOPS_TEST_BUSY=$$(nproc) $(MAKE) test

clean:
	rm -rf $(BUILD) $(VENV)
