#!/usr/bin/env bash
# `make bench`: speed, size and memory figures of the Lambda binary beside a Python rotator of
# the same contract (bench/python_rotator/), against the same stand-ins (see bench/README.md).
# Figures only, never pass/fail thresholds; exits non-zero only if something does not work.
# Needs the binary (default: target/lambda-host/bootstrap from `make lambda-bin`, the deployed
# static musl build for this machine; SES_SMTP_ROTATOR_BIN names another) and the stand-in venv:
# `make bench` builds both first.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="${SES_SMTP_ROTATOR_BIN:-${CARGO_TARGET_DIR:-$root/target}/lambda-host/bootstrap}"
py="${STANDIN_PYTHON:-$root/.venv/bin/python}"

if [[ ! -x "$bin" ]]; then
  echo "bench: no binary at $bin; run 'make bench' (or 'make lambda-bin')" >&2
  exit 1
fi
if [[ ! -x "$py" ]]; then
  echo "bench: no stand-in venv at $py; run 'make bench' (or 'make venv')" >&2
  exit 1
fi

echo "ses-smtp-rotator bench — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -sm)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)," \
     "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+changes')"
echo "Binary: $bin, $(stat -c %s "$bin") bytes, built $(date -u -d @"$(stat -c %Y "$bin")" '+%Y-%m-%d %H:%M UTC')"
echo "Python rotator (bench/python_rotator/): $("$py" -c 'import sys, boto3; print(f"Python {sys.version.split()[0]}, boto3 {boto3.__version__}")'), $py"
exec "$py" "$root/bench/bench.py" --bin "$bin" "$@"
