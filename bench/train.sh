#!/usr/bin/env bash
# Benchmark of cellweave-train (CLAIRE).
#
# 1. One training step at the reference size (256 anchors -> 2 x 256 views, 2,000 genes,
#    encoder 2000-500-250-128, queue 2,048, symmetric MoCo, Adam) on random dense inputs as
#    ../shared/reference/tools/claire_step_bench.py times CLAIRE's PyTorch code (0.134 s
#    per step, one thread, on this kind of machine): the fused CPU path used for training
#    (Moco::step_cpu) and the candle-ops path (Moco::step, the one a CUDA device runs).
#    Median and minimum over the steps (the machine is shared: the minimum is the least
#    disturbed figure).
# 2. Whole runs with default parameters (one thread): wall time of cellweave-train on the
#    pipeline outputs of cellbench_3tech and kang_ifnb, and seconds per epoch on a simulated
#    20,000-cell x 2,000-HVG table.
#
# usage: bench/train.sh        (builds what it needs)
# env:   STEPS (default 60), CELLWEAVE_SHARED, CARGO_TARGET_DIR, SKIP_RUNS=1 (step only)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
SHARED=${CELLWEAVE_SHARED:-$ROOT/../shared}
STEPS=${STEPS:-60}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

(cd "$ROOT" && cargo build --release --workspace -q && cargo build --release --workspace --examples -q)

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (shared machine: wall times include contention)"
echo
for t in 1 2; do
  RAYON_NUM_THREADS=$t "$BIN/examples/claire_step" --steps "$STEPS"
  echo
done

[ "${SKIP_RUNS:-0}" = 1 ] && exit 0

# prep NAME INPUT: import -> filter -> normalize -> hvg -> pairs
prep() {
  local n=$1 in=$2
  "$BIN/cellweave-import" -q "$in" -o "$WORK/$n.raw.arrow"
  "$BIN/cellweave-filter" -q "$WORK/$n.raw.arrow" -o "$WORK/$n.filt.arrow"
  "$BIN/cellweave-normalize" -q "$WORK/$n.filt.arrow" -o "$WORK/$n.norm.arrow"
  "$BIN/cellweave-hvg" -q "$WORK/$n.norm.arrow" -o "$WORK/$n.hvg.arrow"
  "$BIN/cellweave-pairs" -q --threads 2 "$WORK/$n.hvg.arrow" -o "$WORK/$n.pairs.arrow"
}

# train NAME EXTRA...: one default run on one thread; prints a table row.
train() {
  local n=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$BIN/cellweave-train" -q --threads 1 "$WORK/$n.hvg.arrow" --pairs "$WORK/$n.pairs.arrow" \
    -o "$WORK/$n.model" --embedding "$WORK/$n.emb.arrow" --log "$WORK/$n.log.tsv" "$@"
  t1=$(date +%s.%N)
  awk -v n="$n" -v wall="$(echo "$t1 - $t0" | bc)" -F'\t' '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { epochs++; steps += $col["steps"]; secs += $col["seconds"]; cells = $col["training_cells"]; loss = $col["loss"] }
    END { printf "%-26s %7d %7d %8d %9.3f %9.1f %9.1f %8.4f\n", n, cells, epochs, steps, secs / steps, secs, wall, loss }
  ' "$WORK/$n.log.tsv"
}

echo "whole runs, default parameters, one thread"
printf "%-26s %7s %7s %8s %9s %9s %9s %8s\n" data train_c epochs steps s/step train_s wall_s loss
for d in cellbench_3tech kang_ifnb; do
  if [ -d "$SHARED/data/$d" ]; then
    prep "$d" "$SHARED/data/$d"
    train "$d"
  else
    echo "$d: not found under $SHARED/data (skipped)"
  fi
done
"$BIN/cellweave-simulate" -q --cells 20000 --genes 5000 --batches 4 --seed 1 -o "$WORK/sim20k.in.arrow"
prep sim20k_2000hvg "$WORK/sim20k.in.arrow"
train sim20k_2000hvg --epochs 2 --stage1-epochs 1
