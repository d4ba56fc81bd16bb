#!/usr/bin/env bash
# conda-build's build script for packaging/conda/meta.yaml: the cellweave-* binaries into
# $PREFIX/bin, HDF5 and zlib compiled in (static-hdf5), CUDA off.
set -euo pipefail

cd "${SRC_DIR:?conda-build sets SRC_DIR}"
target="${CARGO_TARGET_DIR:-$SRC_DIR/target}"
cargo build --release --locked --workspace --bins --features cellweave/static-hdf5
mkdir -p "${PREFIX:?conda-build sets PREFIX}/bin"
n=0
for f in "$target"/release/cellweave-*; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    install -m 755 "$f" "$PREFIX/bin/"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "build.sh: no cellweave-* binaries in $target/release" >&2; exit 1; }
echo "build.sh: $n binaries installed into $PREFIX/bin" >&2
