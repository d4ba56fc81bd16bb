#!/usr/bin/env bash
# Benchmark of cellweave-impute.
#
# 1. Accuracy on ../shared/data/pbmc_g949_impute (2,000 10x PBMCs x 949 genes; the input has
#    90% of its entries zero): held-out MSE on log10(x+1) and median Pearson per gene / per
#    cell, on the entries non-zero in the truth and zero in the input, for LATE (observed
#    values kept), LATE --batch-aware, and the gene-mean and kNN-smoothing baselines, next to
#    the reference numbers of impute_eval.py.
# 2. Speed at the LATE paper's size: 10,000 cells x 949 genes (cellweave-simulate, about 10%
#    of the entries non-zero like the masked input): seconds per epoch (8,500 training cells
#    + 1,500 validation cells) with 2 and 1 threads, time to convergence (early stopping,
#    patience 10, at most 100 epochs as in the LATE paper, and the time until the validation
#    loss first came within 1% of its best), and one epoch with candle autograd instead of
#    the hand-written CPU path.
#
# usage: bench/impute.sh            (after `cargo build --release --workspace`)
# env:   THREADS (default 2), CELLWEAVE_SHARED, CARGO_TARGET_DIR, EPOCHS (default 100)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
SHARED=${CELLWEAVE_SHARED:-$ROOT/../shared}
THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-100}
DATA=$SHARED/data/pbmc_g949_impute
REF=$SHARED/reference/pbmc_g949_impute/baselines.jsonl
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for t in impute import simulate; do
  [ -x "$BIN/cellweave-$t" ] || { echo "missing $BIN/cellweave-$t: cargo build --release --workspace" >&2; exit 1; }
done

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "threads: $THREADS; load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: wall times include contention)"
echo

"$BIN/cellweave-import" -q "$DATA/truth.h5ad" -o "$WORK/truth.arrow"
"$BIN/cellweave-import" -q "$DATA/masked.h5ad" -o "$WORK/masked.arrow"

# awk prelude: col["name"] = field number, from the training log's header.
COLS='NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next } '

# run NAME ARGS...: impute the masked input, print one table row.
row() {
  local name=$1; shift
  local log=$WORK/$name.log.tsv
  local start end
  start=$(date +%s.%N)
  "$BIN/cellweave-impute" "$WORK/masked.arrow" -o "$WORK/$name.arrow" --truth "$WORK/truth.arrow" \
    --threads "$THREADS" -q "$@" > "$WORK/$name.json"
  end=$(date +%s.%N)
  local epochs="-" best="-" per="-"
  if [ -f "$log" ]; then
    epochs=$(($(wc -l < "$log") - 1))
    best=$(awk -F'\t' "$COLS"'NR > 1 && $col["best"] == "true" {b = $col["epoch"]} END {print b}' "$log")
    per=$(awk -F'\t' "$COLS"'NR > 1 {s += $col["seconds"]; n++} END {printf "%.2f", s / n}' "$log")
  fi
  jq -r --arg n "$name" --arg e "$epochs" --arg b "$best" --arg p "$per" --arg w "$(echo "$end - $start" | bc)" \
    '[$n, $e, $b, $p, ($w | tonumber | . * 10 | round / 10 | tostring), (.mse_heldout * 10000 | round / 10000 | tostring),
      (.median_pearson_gene * 1000 | round / 1000 | tostring), (.median_pearson_cell * 1000 | round / 1000 | tostring)] | @tsv' \
    "$WORK/$name.json"
}

echo "## Accuracy: pbmc_g949_impute (2,000 cells x 949 genes, $(jq -s '.[0].n_heldout' "$REF") held-out entries)"
{
  printf 'method\tepochs\tbest_epoch\ts/epoch\twall_s\tmse\tpearson_gene\tpearson_cell\n'
  row late --epochs "$EPOCHS" --only-zeros --log "$WORK/late.log.tsv"
  row late_batch_aware --epochs "$EPOCHS" --only-zeros --batch-aware --log "$WORK/late_batch_aware.log.tsv"
  row late_all_entries --epochs "$EPOCHS" --log "$WORK/late_all_entries.log.tsv"
  row gene-mean --method gene-mean
  row knn15 --method knn --knn 15
  jq -r '["ref:" + .method, "-", "-", "-", "-", (.mse_heldout * 10000 | round / 10000 | tostring),
          (.median_pearson_gene * 1000 | round / 1000 | tostring), (.median_pearson_cell * 1000 | round / 1000 | tostring)] | @tsv' "$REF"
} | column -t -s $'\t'
echo "(late = decoder output at the zeros, observed values kept (--only-zeros); late_all_entries = decoder output everywhere)"
echo

echo "## Speed: 10,000 cells x 949 genes (simulated, 2 batches), G-800-400-800-G, batch 256"
"$BIN/cellweave-simulate" -q -o "$WORK/sim.arrow" --cells 10000 --genes 949 --batches 2 --density 0.33 --dropout 0.7 --seed 1
speed() {
  local name=$1 threads=$2; shift 2
  local log=$WORK/speed_$name.tsv start end
  start=$(date +%s.%N)
  "$BIN/cellweave-impute" "$WORK/sim.arrow" -o "$WORK/speed_$name.arrow" --threads "$threads" -q --log "$log" "$@"
  end=$(date +%s.%N)
  # within_1pct: epochs and seconds until the validation loss first came within 1% of its best.
  awk -F'\t' -v n="$name" -v t="$threads" -v w="$(echo "$end - $start" | bc)" '
    '"$COLS"'
    NR > 1 { e++; v[e] = $col["val_loss"]; s = $col["seconds"]; c[e] = c[e - 1] + s
             if ($col["best"] == "true") b = $col["epoch"]; if (e == 1 || s < m) m = s; if (e == 1 || v[e] < best) best = v[e] }
    END { for (i = 1; i <= e; i++) if (v[i] <= 1.01 * best) { k = i; break }
          printf "%s\t%s\t%d\t%s\t%.2f\t%.2f\t%d (%.0f s)\t%.1f\t%.1f\n", n, t, e, b, c[e] / e, m, k, c[k], c[e], w }' "$log"
}
{
  printf 'run\tthreads\tepochs\tbest_epoch\tmean_s/epoch\tmin_s/epoch\twithin_1pct_of_best\ttrain_s\twall_s\n'
  speed fast_5_epochs 2 --epochs 5 --patience 0
  speed fast_5_epochs_1t 1 --epochs 5 --patience 0
  speed autograd_1_epoch 2 --epochs 1 --engine autograd
  speed fast_to_convergence_1t 1 --epochs "$EPOCHS" --patience 10
  speed fast_to_convergence 2 --epochs "$EPOCHS" --patience 10
} | column -t -s $'\t'
# CPU seconds per epoch on one thread (user + system time of 5 epochs minus 0 epochs): a
# figure that contention from other processes does not inflate.
cpu() {
  /usr/bin/time -f "%U %S" -o "$WORK/cpu_$1" "$BIN/cellweave-impute" "$WORK/sim.arrow" -o "$WORK/cpu.arrow" \
    --threads 1 -q --epochs "$1" --patience 0
  awk '{print $1 + $2}' "$WORK/cpu_$1"
}
c0=$(cpu 0)
c5=$(cpu 5)
echo "single-thread CPU time per epoch: $(echo "scale=2; ($c5 - $c0) / 5" | bc) s (5 epochs: $c5 s, reading + imputing only: $c0 s)"
echo "(an epoch = one pass over the 8,500 training cells + the validation loss on 1,500 cells;"
echo " training stops after 10 epochs without a lower validation loss, or at $EPOCHS epochs (LATE's schedule);"
echo " train_s = sum of epoch times; wall_s adds reading, the final imputation of all cells and writing)"
