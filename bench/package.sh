#!/usr/bin/env bash
# `make bench-package`: the Lambda zip as `sam build` + `sam package` make it (the static musl
# binary of deploy/build-lambda.sh, zipped as `bootstrap`), its size and the build's wall time.
#   ARCH=arm64 (default, the template's Architectures) or ARCH=x86_64
#   CARGO_TARGET_DIR  where cargo builds (default target/); the zip goes to
#                     $CARGO_TARGET_DIR/lambda-$ARCH/ses-smtp-rotator/bootstrap.zip
# A first build in an empty target dir is a cold build: ~4-5 min on 2 cores. `make bench` then
# reports the zip beside the other figures.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
arch="${ARCH:-arm64}"
case "$arch" in
  arm64) triple=aarch64-unknown-linux-musl ;;
  x86_64) triple=x86_64-unknown-linux-musl ;;
  *) echo "bench-package: ARCH must be arm64 or x86_64, not '$arch'" >&2; exit 2 ;;
esac
target_dir="$(realpath -m "${CARGO_TARGET_DIR:-$root/target}")"
zip="$target_dir/lambda-$arch/ses-smtp-rotator/bootstrap.zip"
cold="warm"
[[ -d "$target_dir/$triple/release" ]] || cold="cold"
start=$(date +%s)
bash "$root/deploy/build-lambda.sh" --arch "$arch" --zip "$zip"
took=$(( $(date +%s) - start ))
echo "bench-package: $zip"
echo "bench-package: $arch Lambda zip $(stat -c %s "$zip") bytes; $cold build, ${took} s wall on $(nproc) CPUs"
