#!/usr/bin/env bash
# CLAIRE's convergence in steps (issue 18, docs/scale.md "Training length"): simulated N cells
# (5,000 genes -> 2,000 HVGs, 8 batches, 20 cell types), the stage-by-stage chain (stage 1
# alone, cellweave-refine, then stage 2 continued with --init in growing slices of 1, 1, 2, 4,
# 8, 16, 32 epochs: epochs keep counting, so each point is the same run stopped earlier), each
# slice's embedding scored by cellweave-score (classic scIB total, exact kNN). One thread.
#
# usage: bench/claire_length.sh N [SEED]     (env: WORK, default /tmp/cellweave-length;
#                                            CARGO_TARGET_DIR; NICE, default 10)
# Output: one line per slice (cells, seed, stage-2 epochs, stage-2 steps, bio, batch, total),
# also appended to $WORK/length.tsv.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:?usage: bench/claire_length.sh N [SEED]}; SEED=${2:-0}
B=${CARGO_TARGET_DIR:-$ROOT/target}/release
WORK=${WORK:-/tmp/cellweave-length}; W=$WORK/n$N; mkdir -p "$W"; cd "$W"
export RAYON_NUM_THREADS=1
run() { nice -n "${NICE:-10}" "$@"; }
(cd "$ROOT" && cargo build -q --release --workspace)
if [ ! -f hvg.arrow ]; then
  run "$B/cellweave-simulate" --cells "$N" --genes 5000 --batches 8 --cell-types 20 --seed 1 -o raw.arrow -q
  run "$B/cellweave-filter" raw.arrow --min-cells 3 -o filt.arrow -q
  run "$B/cellweave-normalize" filt.arrow -o norm.arrow -q
  run "$B/cellweave-hvg" norm.arrow --n-top-genes 2000 --batch-key batch -o hvg.arrow -q
  run "$B/cellweave-pairs" hvg.arrow -o pairs.arrow -q
fi
if [ ! -d "s1_$SEED" ]; then
  run "$B/cellweave-train" hvg.arrow --pairs pairs.arrow --stage1-only -o "s1_$SEED" \
    --embedding "s1_$SEED.arrow" --seed "$SEED" -q
  run "$B/cellweave-refine" hvg.arrow --pairs pairs.arrow --embedding "s1_$SEED.arrow" \
    -o "refined_$SEED.arrow" -q
fi
prev=s1_$SEED; total=0; steps=0
for add in 1 1 2 4 8 16 32; do
  total=$((total + add)); m=m${SEED}_e$total
  [ -d "$m" ] || run "$B/cellweave-train" hvg.arrow --pairs "refined_$SEED.arrow" --init "$prev" \
    --epochs "$add" -o "$m" --embedding "$m.arrow" --seed "$SEED" -q
  steps=$((steps + $(awk '$1 == "steps:" {print $2; exit}' "$m/card.yaml")))
  [ -f "$m.scores.tsv" ] || run "$B/cellweave-score" "$m.arrow" --unintegrated hvg.arrow \
    --label-key cell_type --batch-key batch -o "$m.scores.tsv" -q
  python3 - "$m.scores.tsv" "$N" "$SEED" "$total" "$steps" <<'PY' | tee -a "$WORK/length.tsv"
import csv, sys
r = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))[0]
print("\t".join(sys.argv[2:6] + [r[f"agg_scib_classic_{k}"] for k in ("bio", "batch", "total")]))
PY
  prev=$m
done
