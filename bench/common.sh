# Sourced by the bench scripts after `set -euo pipefail`: ROOT (this checkout), BIN (the
# release binaries: $CARGO_TARGET_DIR/release, else target/release), SHARED (the shared data:
# $CELLWEAVE_SHARED, else ../shared) and need_bins.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
SHARED=${CELLWEAVE_SHARED:-$ROOT/../shared}

# need_bins TOOL...: stop, naming the first cellweave-TOOL that is not built.
need_bins() {
  local t
  for t in "$@"; do
    [ -x "$BIN/cellweave-$t" ] || { echo "missing $BIN/cellweave-$t: cargo build --release --workspace" >&2; exit 1; }
  done
}
