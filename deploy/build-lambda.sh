#!/usr/bin/env bash
# The one build of the Lambda binary: what `sam build` runs (template.yaml, BuildMethod: makefile
# -> `make build-RotatorFunction`), what `make bench-package` zips and what `make bench` measures.
#
#   deploy/build-lambda.sh [--arch arm64|x86_64|host] [--out DIR] [--zip FILE] [--or-glibc]
#
# It builds a static, position-independent executable for musl (`<arch>-unknown-linux-musl`) with
# cargo-lambda and zig, so the function maps no libc, libm or dynamic loader and does no symbol
# binding at start (bench/RESULTS.md: about half the cold start and 2 MiB less resident memory
# than the glibc build). Rust's aarch64 musl target links non-PIE by default and zig ignores
# `-static-pie`, so the link is asked for `-static -pie` explicitly, and the result is checked:
# the script fails unless the file is an ELF executable of the right machine, of type DYN (PIE,
# so the kernel randomises where the image loads), with no program interpreter (static).
#
#   --arch      arm64 (default: the template's Architectures), x86_64, or host (this machine's;
#               what `make test` and `make demo` run). ARCH in the environment does the same.
#   --out       copy the binary there as `bootstrap` (sam build passes $ARTIFACTS_DIR)
#   --zip       also write a Lambda zip holding `bootstrap` (deflate, mode 755), as `sam package` does
#   --or-glibc  for tests on a machine that cannot fetch the musl standard library (rustup target
#               add needs static.rust-lang.org): build the glibc release binary instead, say so
#               loudly, and copy that to --out. Never for a deployment.
#
# Tools: cargo-lambda and zig from PyPI, pinned in deploy/requirements-build.txt, installed into
# .venv-build at the repository root on first use (python3 needed). Without python3, a
# `cargo-lambda` already on PATH is used. The Rust standard library for the target is added with
# `rustup target add` when missing (exit status 3 when that fails, 1 for any other failure).
# CARGO_TARGET_DIR is honoured (default: target/); the build
# lands in $CARGO_TARGET_DIR/lambda-<arch>/ses-smtp-rotator/bootstrap.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
arch="${ARCH:-arm64}"
out=""
zip=""
or_glibc=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) arch="${2:?--arch needs arm64 or x86_64}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --zip) zip="${2:?--zip needs a file name}"; shift 2 ;;
    --or-glibc) or_glibc=true; shift ;;
    -h|--help) sed -n '2,28p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "build-lambda: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$arch" != host ]] || arch="$(uname -m)"
# --out and --zip are taken relative to where the script was started (it changes directory).
[[ -z "$out" || "$out" == /* ]] || out="$PWD/$out"
[[ -z "$zip" || "$zip" == /* ]] || zip="$PWD/$zip"
case "$arch" in
  arm64|aarch64) arch=arm64; triple=aarch64-unknown-linux-musl; machine=183 ;;  # EM_AARCH64
  x86_64|amd64) arch=x86_64; triple=x86_64-unknown-linux-musl; machine=62 ;;    # EM_X86_64
  *) echo "build-lambda: --arch must be arm64 or x86_64, not '$arch'" >&2; exit 2 ;;
esac

# Absolute, as cargo would resolve it from here (no `realpath -m`: macOS has none), and passed on
# so that cargo builds where this script looks.
target_dir="${CARGO_TARGET_DIR:-$root/target}"
[[ "$target_dir" == /* ]] || target_dir="$PWD/$target_dir"
export CARGO_TARGET_DIR="$target_dir"

# --- tools ----------------------------------------------------------------------------------
venv="$root/.venv-build"
req="$root/deploy/requirements-build.txt"
if command -v python3 >/dev/null; then
  want="$(sha256sum "$req" 2>/dev/null | cut -d' ' -f1 || python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$req")"
  if [[ ! -x "$venv/bin/cargo-lambda" || "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
    echo "build-lambda: setting up .venv-build from deploy/requirements-build.txt (cargo-lambda, zig)" >&2
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
    echo "$want" >"$venv/.requirements.sha256"
  fi
  export PATH="$venv/bin:$PATH"
elif ! command -v cargo-lambda >/dev/null; then
  echo "build-lambda: needs python3 (to install the pinned cargo-lambda and zig into .venv-build)" >&2
  echo "  or cargo-lambda with zig on PATH: pip install -r deploy/requirements-build.txt" >&2
  exit 1
fi
cd "$root"   # rustup (toolchain overrides) and cargo (Cargo.lock, .cargo/config) act on this checkout
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
  echo "build-lambda: adding the Rust standard library for $triple (rustup target add)" >&2
  if ! rustup target add "$triple"; then
    if ! $or_glibc || [[ "$arch" != "$(uname -m | sed 's/aarch64/arm64/')" ]]; then
      echo "build-lambda: 'rustup target add $triple' failed: install that target's standard" >&2
      echo "  library (it needs static.rust-lang.org) and run this again" >&2
      exit 3
    fi
    if [[ -n "$zip" ]]; then
      echo "build-lambda: no standard library for $triple, and --zip makes a deployment package:" >&2
      echo "  refusing to package the glibc build (--or-glibc is for tests only)" >&2
      exit 3
    fi
    echo "build-lambda: WARNING: no standard library for $triple; building the glibc release" >&2
    echo "  binary instead (--or-glibc). It is NOT the binary sam build deploys." >&2
    cargo build --release --locked --bin ses-smtp-rotator
    bin="$target_dir/release/ses-smtp-rotator"
    if [[ -n "$out" ]]; then
      mkdir -p "$out" && cp "$bin" "$out/bootstrap" && chmod 755 "$out/bootstrap"
      echo "build-lambda: copied the glibc build to $out/bootstrap" >&2
    fi
    exit 0
  fi
fi

# --- build ----------------------------------------------------------------------------------
lambda_dir="$target_dir/lambda-$arch"
env_triple="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
# Target-specific flags: they apply to this target only, so the host build's cache stays valid.
# Cargo ignores them when RUSTFLAGS or CARGO_ENCODED_RUSTFLAGS is set, so then they are appended
# there (with --target, those reach only this target's crates too, not build scripts).
pie_flags=(-C link-arg=-static -C link-arg=-pie)
# Set counts, even empty: cargo then still ignores the target-specific variable.
if [[ -n "${CARGO_ENCODED_RUSTFLAGS+x}" ]]; then
  sep=$'\x1f'
  export CARGO_ENCODED_RUSTFLAGS="${CARGO_ENCODED_RUSTFLAGS:+$CARGO_ENCODED_RUSTFLAGS$sep}$(IFS="$sep"; echo "${pie_flags[*]}")"
elif [[ -n "${RUSTFLAGS+x}" ]]; then
  export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }${pie_flags[*]}"
else
  export "CARGO_TARGET_${env_triple}_RUSTFLAGS=${pie_flags[*]}"
fi
cargo lambda build --release --locked --target "$triple" --lambda-dir "$lambda_dir" --bin ses-smtp-rotator
bin="$lambda_dir/ses-smtp-rotator/bootstrap"

# --- check: an ELF64 static-pie executable for the Lambda's machine --------------------------
# u N OFFSET: the unsigned little-endian integer of N bytes at OFFSET.
u() { od -An -t "u$1" -j "$2" -N "$1" "$bin" | tr -d ' '; }
fail() { echo "build-lambda: $bin is not a static PIE executable for $arch: $1" >&2; exit 1; }
[[ "$(head -c 4 "$bin" | od -An -t x1 | tr -d ' ')" == 7f454c46 ]] || fail "not an ELF file"
[[ "$(u 1 4)" == 2 ]] || fail "not a 64-bit ELF file"
[[ "$(u 2 18)" == "$machine" ]] || fail "ELF machine $(u 2 18), expected $machine"
[[ "$(u 2 16)" == 3 ]] || fail "ELF type $(u 2 16), expected 3 (DYN: position-independent)"
phoff="$(u 8 32)" phentsize="$(u 2 54)" phnum="$(u 2 56)"
for ((i = 0; i < phnum; i++)); do
  [[ "$(u 4 $((phoff + i * phentsize)))" != 3 ]] || fail "it has a program interpreter (dynamically linked)"
done

echo "build-lambda: $bin ($arch, static-pie, $(wc -c <"$bin" | tr -d ' ') bytes)"
if [[ -n "$out" ]]; then
  mkdir -p "$out"
  cp "$bin" "$out/bootstrap"
  chmod 755 "$out/bootstrap"
  echo "build-lambda: copied to $out/bootstrap"
fi
if [[ -n "$zip" ]]; then
  py="$(command -v python3 || echo "$venv/bin/python")"
  "$py" - "$bin" "$zip" <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = 0o100755 << 16          # a regular file, rwxr-xr-x: Lambda runs it
info.compress_type = zipfile.ZIP_DEFLATED
with open(src, "rb") as f, zipfile.ZipFile(dst, "w") as z:
    z.writestr(info, f.read())
PY
  echo "build-lambda: $zip ($(wc -c <"$zip" | tr -d ' ') bytes)"
fi
