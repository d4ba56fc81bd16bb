#!/usr/bin/env bash
# The one command that builds everything and runs the main job:
#   scripts/demo.sh [extra snakemake arguments]
# 1. installs the system libraries the build needs (apt-get; Debian/Ubuntu),
# 2. builds the cellweave binaries (cargo build --release --workspace; a Rust toolchain must be
#    installed: https://rustup.rs),
# 3. creates the Python venv with Snakemake (scripts/setup.sh -> .venv),
# 4. runs the whole chain through the Snakemake workflow on the embedded demo: a 3-batch data set
#    made by cellweave-simulate (workflows/snakemake/config/default.yaml), into results/demo/,
# 5. prints where the integrated h5ad, the scores and the UMAP are.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"
threads="${CELLWEAVE_THREADS:-2}"

# shellcheck source=scripts/prereqs.sh
. "$repo/scripts/prereqs.sh"

echo "demo: building (cargo build --release --workspace)" >&2
cargo build --release --workspace
bin="${CARGO_TARGET_DIR:-$repo/target}/release"

scripts/setup.sh

echo "demo: running the workflow (workflows/snakemake, config/default.yaml)" >&2
PATH="$bin:$PATH" "$repo/.venv/bin/snakemake" -s workflows/snakemake/Snakefile \
    --configfile workflows/snakemake/config/default.yaml --cores "$threads" --quiet rules "$@"

out="$repo/results/demo/demo"
echo
echo "cellweave demo done (all stages' tables, logs and benchmarks in $out/):"
echo "  integrated h5ad: $out/integrated.h5ad"
echo "  scores:          $out/scores.tsv"
echo "  UMAP:            $out/umap.png"
