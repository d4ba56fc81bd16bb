#!/usr/bin/env bash
# The one command that runs the tests on a fresh machine:
#   scripts/test.sh [extra cargo test arguments]
# 1. installs the system libraries the build needs (apt-get; Debian/Ubuntu),
# 2. creates the workflow venv with Snakemake, reftrace and anndata (scripts/setup.sh -> .venv),
# 3. when the shared data is there (../shared or $CELLWEAVE_SHARED), builds the reference Python
#    stack the oracle tests compare against (scanpy, scib-metrics, umap-learn; pinned by the shared
#    data's own lock file, plus scikit-misc) into $CELLWEAVE_REF_ENV (~/.cache/cellweave-refenv),
# 4. runs `cargo test --release --workspace` (builds first: the end-to-end tests run the binaries).
# Tests that need the shared data or the reference stack skip loudly without them, and fail
# under CI=true.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"
export CELLWEAVE_SHARED="${CELLWEAVE_SHARED:-$(cd "$repo/.." && pwd)/shared}"
export CELLWEAVE_REF_ENV="${CELLWEAVE_REF_ENV:-$HOME/.cache/cellweave-refenv}"

# shellcheck source=scripts/prereqs.sh
. "$repo/scripts/prereqs.sh"

scripts/setup.sh

ref_lock="$CELLWEAVE_SHARED/reference/tools/requirements-lock.txt"
if [ -f "$ref_lock" ]; then
    if [ -x "$CELLWEAVE_REF_ENV/bin/python" ] && cmp -s "$ref_lock" "$CELLWEAVE_REF_ENV/.cellweave-lock" \
        && "$CELLWEAVE_REF_ENV/bin/python" -c 'import scanpy, skmisc.loess, umap' 2>/dev/null; then
        echo "test: reference Python stack in $CELLWEAVE_REF_ENV is up to date" >&2
    else
        echo "test: building the reference Python stack in $CELLWEAVE_REF_ENV (~3 min)" >&2
        rm -rf "$CELLWEAVE_REF_ENV"
        REFENV="$CELLWEAVE_REF_ENV" bash "$CELLWEAVE_SHARED/reference/tools/setup_env.sh"
        "$CELLWEAVE_REF_ENV/bin/pip" install -q scikit-misc==0.5.3
        cp "$ref_lock" "$CELLWEAVE_REF_ENV/.cellweave-lock"
    fi
    export CELLWEAVE_REF_PYTHON="$CELLWEAVE_REF_ENV/bin/python"
else
    echo "test: !!! no shared data at $CELLWEAVE_SHARED: the tests on real data and the Python oracles will skip !!!" >&2
fi

cargo build --release --workspace
cargo test --release --workspace "$@"
