# ses-smtp-rotator — the two commands a newcomer needs:
#   make demo   sets up what it needs, then runs a complete credential rotation locally
#               (bootstrap + regular rotation) against the AWS stand-ins and shows it
#   make test   sets up what it needs, then runs every test and check
#
# Nothing is assumed beyond a rustup toolchain and python3: the Python stand-ins go into a
# project-local venv from pinned requirements; missing Debian packages are installed.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON  ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
BIN     := $(abspath $(or $(CARGO_TARGET_DIR),target))/release/ses-smtp-rotator
CARGO   ?= cargo
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help demo test check fmt-check clippy unit e2e standin-test template-lint build venv deps bench bench-package clean

help:
	@echo "make demo   - run a complete rotation locally against the stand-ins and show it"
	@echo "make test   - run every test (format, clippy, unit, stand-in, end-to-end, template lint)"
	@echo "make bench  - print speed and size figures, Rust beside a Python rotator"
	@echo "make bench-package - build the arm64 Lambda zip with cargo-lambda (cold: ~10 min) for make bench"
	@echo "make build  - release build of the binary ($(BIN))"

# --- set-up -----------------------------------------------------------------------------------

# Debian packages some machines lack: python3-venv (for `python3 -m venv` on Debian's python).
deps:
	@if ! $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1; then \
	  echo "installing python3-venv"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
	    && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
	    || { echo "cannot install python3-venv (needed for the project venvs): install it and retry" >&2; exit 1; }; \
	fi

$(VENV)/.stamp: tests/standin/requirements.txt
	@$(MAKE) --no-print-directory deps
	@echo "creating $(VENV) from tests/standin/requirements.txt"
	@rm -rf $(VENV)
	@$(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install -q --disable-pip-version-check -r tests/standin/requirements.txt
	@touch $@

venv: $(VENV)/.stamp

build:
	$(CARGO) build --release --locked

# --- the two commands ---------------------------------------------------------------------------

demo: venv build
	@$(VPY) tests/demo.py --bin $(BIN)

test: check unit standin-test e2e template-lint
	@echo "make test: all checks passed"

# --- parts of `make test` -------------------------------------------------------------------------

check: fmt-check clippy

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit:
	$(CARGO) test --locked --lib --bins

standin-test: venv
	$(VPY) -m pytest -q -p no:cacheprovider tests/standin

# End-to-end: the real release binary under the local Lambda Runtime API, driven by the
# rotation orchestrator, with state read back from moto and the SES emulator.
e2e: venv build
	SES_SMTP_ROTATOR_BIN=$(BIN) STANDIN_PYTHON=$(CURDIR)/$(VPY) \
	  $(CARGO) test --locked --test '*' -- --show-output

template-lint: deps
	bash deploy/lint.sh

# The bench: Rust beside bench/python_rotator/ (stand-in venv's boto3), plus any Lambda zip
# that `make bench-package` built (ARCH=arm64 by default, or x86_64).
LAMBDA_ZIPS := $(wildcard $(abspath $(or $(CARGO_TARGET_DIR),target))/lambda-*/ses-smtp-rotator/bootstrap.zip)

bench: venv build
	SES_SMTP_ROTATOR_BIN=$(BIN) bash bench/run.sh $(addprefix --lambda-zip ,$(LAMBDA_ZIPS))

BENCH_VENV := .venv-bench
$(BENCH_VENV)/.stamp: bench/requirements.txt
	@$(MAKE) --no-print-directory deps
	@echo "creating $(BENCH_VENV) from bench/requirements.txt"
	@rm -rf $(BENCH_VENV)
	@$(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	@touch $@

bench-package: $(BENCH_VENV)/.stamp
	bash bench/package.sh

clean:
	rm -rf target $(VENV) .venv-* .aws-sam
