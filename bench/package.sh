#!/usr/bin/env bash
# `make bench-package`: the Lambda zip as `sam build` makes it (cargo-lambda with zig, the pins
# of bench/requirements.txt = deploy/requirements-sam.txt), its size and the build's wall time.
#   ARCH=arm64 (default, the template's Architectures) or ARCH=x86_64
#   CARGO_TARGET_DIR  where cargo builds (default target/); the zip goes to $CARGO_TARGET_DIR/lambda-$ARCH/
# A first build in an empty target dir is a cold build: ~10 min on 2 cores. `make bench` then
# reports the zip beside the other figures.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
arch="${ARCH:-arm64}"
case "$arch" in
  arm64) triple=aarch64-unknown-linux-gnu; flag=--arm64 ;;
  x86_64) triple=x86_64-unknown-linux-gnu; flag=--x86-64 ;;
  *) echo "bench-package: ARCH must be arm64 or x86_64, not '$arch'" >&2; exit 2 ;;
esac
venv="$root/.venv-bench"
if [[ ! -x "$venv/bin/cargo-lambda" ]]; then
  echo "bench-package: no cargo-lambda in $venv; run 'make bench-package'" >&2
  exit 1
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
  echo "bench-package: installing the Rust standard library for $triple (rustup target add)"
  rustup target add "$triple" || {
    echo "bench-package: 'rustup target add $triple' failed; install it by hand, or build the" >&2
    echo "  x86_64 zip instead: ARCH=x86_64 make bench-package" >&2
    exit 1
  }
fi
target_dir="$(realpath -m "${CARGO_TARGET_DIR:-$root/target}")"
out="$target_dir/lambda-$arch"
cold="warm"
[[ -d "$target_dir/$triple/release" ]] || cold="cold"
start=$(date +%s)
PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="$target_dir" \
  cargo lambda build --release --locked "$flag" --output-format zip --lambda-dir "$out" --bin ses-smtp-rotator
took=$(( $(date +%s) - start ))
zip="$out/ses-smtp-rotator/bootstrap.zip"
echo "bench-package: $zip"
echo "bench-package: $arch Lambda zip $(stat -c %s "$zip") bytes; $cold build, ${took} s wall on $(nproc) CPUs"
