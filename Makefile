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
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),target))
BIN     := $(TARGET_DIR)/release/ses-smtp-rotator
# The binary `make test` (end-to-end), `make demo` and `make bench` run: the deployed build
# (deploy/build-lambda.sh: static musl PIE, as `sam build` makes it) for this machine's
# architecture, copied here by the lambda-bin target.
LAMBDA_BIN := $(TARGET_DIR)/lambda-host/bootstrap
LAMBDA_DIR := $(TARGET_DIR)/lambda-host
CARGO   ?= cargo
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help demo test check fmt-check clippy unit e2e explore explore-sample policy-report standin-test e2e-arm64 template-lint build lambda-bin qemu venv deps bench bench-package build-RotatorFunction build-MaintenanceFunction clean

help:
	@echo "make demo   - run a complete rotation locally against the stand-ins and show it"
	@echo "make test   - run every test (format, clippy, unit, stand-in, end-to-end native and arm64, template lint)"
	@echo "make bench  - print speed and size figures, Rust beside a Python rotator"
	@echo "make bench-package - build the arm64 Lambda zip as sam build does (cold: ~5 min) for make bench"
	@echo "make build  - release build of the binary for this machine's glibc ($(BIN))"
	@echo "make lambda-bin - the deployed build (static musl) for this machine ($(LAMBDA_BIN))"

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

# --or-glibc: a machine that cannot fetch the musl standard library (rustup target add) still
# runs the tests, on the glibc build, with a warning that says so.
lambda-bin:
	bash deploy/build-lambda.sh --arch host --out $(LAMBDA_DIR) --or-glibc

# --- the two commands ---------------------------------------------------------------------------

demo: venv lambda-bin
	@$(VPY) tests/demo.py --bin $(LAMBDA_BIN)

test: check unit standin-test e2e explore-sample policy-report e2e-arm64 template-lint
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

# End-to-end: the deployed build (static musl, this machine's architecture) under the local
# Lambda Runtime API, driven by the rotation orchestrator, with state read back from moto and
# the SES emulator.
# Every AWS request of the binary is authorized against the role policy rendered from
# template.yaml for the variant under test (tests/standin/sesstandin/policy.py); each stand-in
# records there which granted actions the tests used, and policy-report adds them up.
POLICY_USAGE := $(TARGET_DIR)/policy-usage

e2e: venv lambda-bin
	rm -rf $(POLICY_USAGE)
	SES_SMTP_ROTATOR_BIN=$(LAMBDA_BIN) STANDIN_PYTHON=$(CURDIR)/$(VPY) STANDIN_POLICY_USAGE_DIR=$(POLICY_USAGE) \
	  $(CARGO) test --locked --test '*' -- --show-output

# The schedule explorer (tests/standin/explore.py): two or three overlapping invocations of the
# binary whose AWS requests the stand-in holds and releases in a seeded order, with crashes and
# lost responses at seeded points; DESIGN's invariants checked after every step, then recovery.
# `make explore` runs SEEDS seeds (default 1000; SEED=n replays one and prints its schedule;
# EXPLORE_FLAGS e.g. --no-record-check, --invariants a,b, -j N). explore-sample (part of
# `make test`) runs a fixed sample and fails on any violation. SES_SMTP_ROTATOR_BIN=path runs
# another binary (and skips building lambda-bin).
SEEDS ?= 1000
EXPLORE_FLAGS ?=
EXPLORE_BIN := $(or $(SES_SMTP_ROTATOR_BIN),$(LAMBDA_BIN))
EXPLORE_SAMPLE := --first 1 --seeds 20

explore: venv
	@[ -n "$(SES_SMTP_ROTATOR_BIN)" ] || $(MAKE) --no-print-directory lambda-bin
	SES_SMTP_ROTATOR_BIN=$(EXPLORE_BIN) $(VPY) tests/standin/explore.py $(if $(SEED),--seed $(SEED),--seeds $(SEEDS)) $(EXPLORE_FLAGS)

explore-sample: venv
	@[ -n "$(SES_SMTP_ROTATOR_BIN)" ] || $(MAKE) --no-print-directory lambda-bin
	SES_SMTP_ROTATOR_BIN=$(EXPLORE_BIN) $(VPY) tests/standin/explore.py $(EXPLORE_SAMPLE) $(EXPLORE_FLAGS)

# Least privilege, measured (after e2e): per variant, every action template.yaml grants and
# how often the end-to-end tests used it; an unused one must be justified in the template.
# Also checks README's execution-role table against the rendered policy.
policy-report: venv
	@[ -d $(POLICY_USAGE) ] || { echo "policy-report: no usage recorded in $(POLICY_USAGE): run make e2e first" >&2; exit 1; }
	$(VPY) tests/standin/policy_report.py $(POLICY_USAGE)

# The arm64 binary that `sam build` deploys, itself, under qemu-user (Debian's qemu-user on an
# x86_64 machine): the rotation, testSecret and several-region suites. The emulation says
# nothing about speed; it proves the cross-built artifact (zig's aarch64 link, aws-lc's aarch64
# code, static PIE start-up) behaves as the tests demand. On an arm64 machine `e2e` already runs
# it natively. Skipped, with a warning, only when the aarch64 musl standard library cannot be
# fetched (build-lambda.sh exit status 3).
ARM64_DIR := $(TARGET_DIR)/lambda-arm64
ARM64_RUN := $(ARM64_DIR)/bootstrap-under-qemu

e2e-arm64: venv
	@if [ "$$(uname -m)" != x86_64 ]; then echo "e2e-arm64: not an x86_64 machine; e2e ran the native build"; exit 0; fi; \
	$(MAKE) --no-print-directory qemu; \
	rc=0; bash deploy/build-lambda.sh --arch arm64 || rc=$$?; \
	if [ $$rc -eq 3 ]; then echo "e2e-arm64: WARNING: SKIPPED, no aarch64-unknown-linux-musl standard library (see above)"; exit 0; fi; \
	[ $$rc -eq 0 ] || exit $$rc; \
	printf '#!/bin/sh\nexec qemu-aarch64 "%s" "$$@"\n' "$(ARM64_DIR)/ses-smtp-rotator/bootstrap" >"$(ARM64_RUN)"; \
	chmod 755 "$(ARM64_RUN)"; \
	SES_SMTP_ROTATOR_BIN=$(ARM64_RUN) STANDIN_PYTHON=$(CURDIR)/$(VPY) \
	  $(CARGO) test --locked --test rotation --test test_secret --test regions

qemu:
	@command -v qemu-aarch64 >/dev/null || { \
	  echo "installing qemu-user (runs the arm64 Lambda binary for e2e-arm64)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
	    && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null \
	    || { echo "cannot install qemu-user (needed for make e2e-arm64): install it and retry" >&2; exit 1; }; }

template-lint: deps
	bash deploy/lint.sh

# The bench: the deployed build (lambda-bin: static musl, for this machine, x86_64 here as the
# stand-in for arm64) beside bench/python_rotator/ (stand-in venv's boto3), plus any Lambda zip
# that `make bench-package` built (ARCH=arm64 by default, or x86_64). BENCH_BIN=path measures
# another binary (the glibc `make build` one, say).
LAMBDA_ZIPS := $(wildcard $(TARGET_DIR)/lambda-*/ses-smtp-rotator/bootstrap.zip)
BENCH_BIN   ?= $(LAMBDA_BIN)

bench: venv
	@[ -n "$(filter command line environment,$(origin BENCH_BIN))" ] || $(MAKE) --no-print-directory lambda-bin
	SES_SMTP_ROTATOR_BIN=$(BENCH_BIN) bash bench/run.sh $(addprefix --lambda-zip ,$(LAMBDA_ZIPS))

bench-package:
	bash bench/package.sh

# `sam build` (template.yaml: BuildMethod makefile) runs this with ARTIFACTS_DIR set: the static
# arm64 binary as `bootstrap` (deploy/build-lambda.sh).
build-RotatorFunction build-MaintenanceFunction:
	bash deploy/build-lambda.sh --arch arm64 --out "$(ARTIFACTS_DIR)"

clean:
	rm -rf target $(VENV) .venv-* .aws-sam
