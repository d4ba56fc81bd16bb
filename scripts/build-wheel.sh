#!/usr/bin/env bash
# Build the `cellweave` Python wheel: every cellweave-* binary, installed by pip onto the
# environment's PATH.
#   scripts/build-wheel.sh [OUT_DIR]        (default: dist/)
# 0. installs its tools from PyPI into $CELLWEAVE_WHEEL_TOOLS (default
#    $HOME/.cache/cellweave-wheel-tools): cmake >= 3.26 (HDF5 2.x needs it; Debian 12 has 3.25)
#    and auditwheel,
# 1. cargo build --release --workspace --bins --features cellweave/static-hdf5: HDF5 and zlib
#    compiled from source and linked in; CUDA off. Needs a Rust toolchain and a C compiler, not
#    libhdf5-dev.
# 2. checks that every binary needs only the C runtime (packaging/wheel/check-runtime-libs.sh),
# 3. writes the wheel (packaging/wheel/make_wheel.py, binaries stripped of symbols),
# 4. asks `auditwheel show` for the manylinux tag the binaries are consistent with and writes the
#    wheel under that tag. Prints the wheel's path on the last line.
# The build shares CARGO_TARGET_DIR with the everyday build: dependencies that do not see the
# feature (arrow, candle, ...) are reused; hdf5-*, the cellweave crates and the binaries are built
# a second time (the first wheel build also compiles HDF5 itself).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"
out="${1:-$repo/dist}"
target="${CARGO_TARGET_DIR:-$repo/target}"
tools="${CELLWEAVE_WHEEL_TOOLS:-$HOME/.cache/cellweave-wheel-tools}"
say() { echo "build-wheel.sh: $*" >&2; }

for cmd in cargo cc python3; do
    command -v "$cmd" >/dev/null || { say "error: $cmd not found on PATH"; exit 1; }
done
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
[ -n "$version" ] || { say "error: Cargo.toml: no version = \"...\" in [workspace.package]"; exit 1; }

pins=("cmake>=3.26,<5" "auditwheel>=6,<7")
if [ ! -x "$tools/bin/auditwheel" ] || [ ! -x "$tools/bin/cmake" ] \
    || ! "$tools/bin/python" -m pip show -q cmake auditwheel >/dev/null 2>&1; then
    say "installing ${pins[*]} into $tools"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet "${pins[@]}"
fi

say "cargo build --release --workspace --bins --features cellweave/static-hdf5"
b0=$(date +%s)
# The cmake crate (hdf5-metno-src's build) runs $CMAKE.
CMAKE="$tools/bin/cmake" cargo build --release --workspace --bins --features cellweave/static-hdf5
say "build: $(($(date +%s) - b0)) s"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/bin" "$stage/wheel"
for f in "$target"/release/cellweave-*; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    cp "$f" "$stage/bin/"
done
# Symbols are of no use to users and are a third of the size.
if command -v strip >/dev/null; then
    strip --strip-all "$stage"/bin/cellweave-*
fi
packaging/wheel/check-runtime-libs.sh "$stage"/bin/cellweave-*

# First under the generic linux tag, then under the manylinux tag auditwheel finds for it.
probe="$(python3 packaging/wheel/make_wheel.py --bin-dir "$stage/bin" --version "$version" --out-dir "$stage/wheel")"
shown="$("$tools/bin/auditwheel" show "$probe" 2>&1)" || { echo "$shown" >&2; say "error: auditwheel show failed"; exit 1; }
tag="$(printf '%s\n' "$shown" | tr '\n' ' ' | sed -n 's/.*consistent with the following platform tag: *"\([^"]*\)".*/\1/p')"
case "$tag" in
    manylinux_*|manylinux20*) ;;
    *) echo "$shown" >&2; say "error: auditwheel found no manylinux tag for the binaries"; exit 1 ;;
esac
wheel="$(python3 packaging/wheel/make_wheel.py --bin-dir "$stage/bin" --version "$version" --tag "$tag" --out-dir "$out")"
"$tools/bin/auditwheel" show "$wheel" >&2
say "$wheel: $(du -h "$wheel" | cut -f1), tag $tag"
echo "$wheel"
