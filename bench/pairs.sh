#!/usr/bin/env bash
# Benchmark of cellweave-pairs (seeds + intra-batch KNN) and of its neighbour search.
#
# 1. The issue's target: 100,000 simulated cells in 5 batches x 2,000 genes
#    (cellweave-simulate --density 0.1, log-normalized by cellweave-normalize), all 10 batch
#    pairs (Seurat-style CCA, mutual 5-NN, k.filter 200) + 10-NN per batch on the joint
#    50-PC PCA, with THREADS threads (default 2). Prints the stage times the tool logs, the
#    total wall time, user CPU and peak memory; then the same with --space pca.
# 2. Exact blocked kNN vs HNSW (instant-distance) at a few sizes, wall time and recall
#    (tools/cellweave/examples/knn_bench.rs), which sets `--nn auto`.
#
# usage: bench/pairs.sh   (builds what it needs; CELLS=20000 for a quicker run)
# env:   THREADS (default 2), CELLS (default 100000), CARGO_TARGET_DIR, KNN_SIZES, SKIP_KNN=1
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
THREADS=${THREADS:-2}
CELLS=${CELLS:-100000}
KNN_SIZES=${KNN_SIZES:-5000,20000,50000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

(cd "$ROOT" && cargo build -q --release --workspace && cargo build -q --release -p cellweave --example knn_bench)
for t in pairs simulate normalize; do
  [ -x "$BIN/cellweave-$t" ] || { echo "missing $BIN/cellweave-$t" >&2; exit 1; }
done

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "threads: $THREADS; load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: wall times include contention)"
echo

"$BIN/cellweave-simulate" -q -o "$WORK/raw.arrow" --cells "$CELLS" --genes 2000 --batches 5 --density 0.1 --seed 1
"$BIN/cellweave-normalize" -q "$WORK/raw.arrow" -o "$WORK/cells.arrow"

run_pairs() { # label, extra args...
  local label=$1; shift
  /usr/bin/time -f "%e %U %M" -o "$WORK/time" \
    "$BIN/cellweave-pairs" "$WORK/cells.arrow" -o "$WORK/pairs.arrow" --threads "$THREADS" "$@" 2> "$WORK/log"
  read -r wall user rss < "$WORK/time"
  echo "### $label: $CELLS cells x 2000 genes, 5 batches, $THREADS threads"
  echo
  echo "| stage | seconds |"
  echo "|---|---:|"
  grep -E '^(read|joint PCA|intra-batch KNN): ' "$WORK/log" | sed -E 's/^(.*): ([0-9.]+) s$/| \1 | \2 |/'
  # per batch pair: CCA / mutual / filter seconds, summed
  awk -F'[(),:]' '/^seeds / {
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^ ?(CCA|PCA)$/) { space += $(i+1) + 0; name = $i }
        if ($i ~ /^ ?mutual$/) mutual += $(i+1) + 0
        if ($i ~ /^ ?filter$/) filter += $(i+1) + 0
      }
      pairs++
    }
    END {
      gsub(/ /, "", name)
      printf "| %d batch pairs: %s | %.2f |\n| %d batch pairs: mutual 5-NN | %.2f |\n| %d batch pairs: k.filter | %.2f |\n", pairs, name, space, pairs, mutual, pairs, filter
    }' "$WORK/log"
  echo "| **total (wall)** | **$wall** |"
  echo
  echo "user CPU ${user} s, peak RSS $((rss / 1024)) MiB; $(grep -E '^[0-9]+ seed pairs' "$WORK/log"); $(grep -E '^seed accuracy' "$WORK/log") (simulated cell types)"
  echo
}

run_pairs "seeds (CCA) + KNN"
run_pairs "seeds (joint PCA) + KNN" --space pca

if [ -z "${SKIP_KNN:-}" ]; then
  echo "### exact blocked kNN vs HNSW (self excluded, k = 10, clustered L2-normalized points, $THREADS threads)"
  echo
  RAYON_NUM_THREADS=$THREADS "$BIN/examples/knn_bench" "$KNN_SIZES" 30,50 10
fi
