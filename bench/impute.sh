#!/usr/bin/env bash
# Benchmark of cellweave-impute.
#
# 1. Accuracy on ../shared/data/pbmc_g949_impute (2,000 10x PBMCs x 949 genes, batches ctrl and
#    stim; the input has 90% of its entries zero): held-out MSE on log10(x+1) and median
#    Pearson per gene / per cell as impute_eval.py computes them (the Pearson medians over the
#    entries non-zero in the truth, observed ones included), the same medians over the
#    held-out entries only (`_ho`), and the batch-effect slope (per gene, the stim - ctrl
#    difference of the mean at the held-out entries, imputed regressed on true: 1 keeps it,
#    0 erases it), for LATE and batch-aware LATE (observed values kept, and not), the
#    gene-mean and kNN-smoothing baselines, next to the reference numbers of impute_eval.py.
# 2. Speed at the LATE paper's size: 10,000 cells x 949 genes (cellweave-simulate, 2 batches,
#    9.8% of the entries non-zero like the masked input): seconds per epoch (8,500 training
#    cells + the validation loss on 1,500) with 2 and 1 threads, batch-aware, with candle
#    autograd instead of the hand-written CPU path, and on a 3x denser input; time to
#    convergence (early stopping, patience 10, at most 100 epochs as in the LATE paper, and
#    the time until the validation loss first came within 1% of its best); peak memory.
#
# usage: bench/impute.sh            (after `cargo build --release --workspace`)
# env:   THREADS (default 2), CELLWEAVE_SHARED, CARGO_TARGET_DIR, EPOCHS (default 100)
set -euo pipefail
. "$(dirname "$0")/common.sh"
THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-100}
DATA=$SHARED/data/pbmc_g949_impute
REF=$SHARED/reference/pbmc_g949_impute/baselines.jsonl
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
need_bins impute import simulate
for t in jq bc column /usr/bin/time; do
  command -v "$t" > /dev/null || { echo "missing $t" >&2; exit 1; }
done
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "threads: $THREADS; load average at start: $(load) (the machine is shared: wall times include contention)"
echo

"$BIN/cellweave-import" -q "$DATA/truth.h5ad" -o "$WORK/truth.arrow"
"$BIN/cellweave-import" -q "$DATA/masked.h5ad" -o "$WORK/masked.arrow"

# awk prelude: col["name"] = field number, from the training log's header.
COLS='NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next } '
# jq: a number rounded to 3 or 4 decimals, "-" when absent.
R='def r(d): if . == null then "-" else (. * d | round / d | tostring) end;'

# impute NAME INPUT ARGS...: run cellweave-impute, record wall seconds and peak RSS (MiB).
impute() {
  local name=$1 input=$2; shift 2
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$WORK/$name.rss" "$BIN/cellweave-impute" "$input" -o "$WORK/$name.arrow" \
    -q "$@" > "$WORK/$name.json"
  end=$(date +%s.%N)
  echo "$end - $start" | bc > "$WORK/$name.wall"
}
mib() { awk '{printf "%.0f", $1 / 1024}' "$WORK/$1.rss"; }

# row NAME ARGS...: impute the masked input, print one accuracy row.
row() {
  local name=$1; shift
  local log=$WORK/$name.log.tsv
  impute "$name" "$WORK/masked.arrow" --truth "$WORK/truth.arrow" --threads "$THREADS" "$@"
  local epochs="-" best="-" per="-"
  if [ -f "$log" ]; then
    epochs=$(($(wc -l < "$log") - 1))
    best=$(awk -F'\t' "$COLS"'NR > 1 && $col["best"] == "true" {b = $col["epoch"]} END {print b}' "$log")
    per=$(awk -F'\t' "$COLS"'NR > 1 {s += $col["seconds"]; n++} END {printf "%.2f", s / n}' "$log")
  fi
  jq -r --arg n "$name" --arg e "$epochs" --arg b "$best" --arg p "$per" --arg w "$(cat "$WORK/$name.wall")" \
    --arg m "$(mib "$name")" "$R"'
    [$n, $e, $b, $p, ($w | tonumber | r(10)), $m, (.mse_heldout | r(10000)), (.median_pearson_gene | r(1000)),
     (.median_pearson_cell | r(1000)), (.median_pearson_gene_heldout | r(1000)),
     (.median_pearson_cell_heldout | r(1000)), (.batch_effect_slope | r(100))] | @tsv' "$WORK/$name.json"
}

echo "## Accuracy: pbmc_g949_impute (2,000 cells x 949 genes, $(jq -s '.[0].n_heldout' "$REF") held-out entries)"
{
  printf 'method\tepochs\tbest_epoch\ts/epoch\twall_s\tpeak_MiB\tmse\tpearson_gene\tpearson_cell\tpearson_gene_ho\tpearson_cell_ho\tbatch_slope\n'
  row late --epochs "$EPOCHS" --only-zeros --log "$WORK/late.log.tsv"
  row late_batch_aware --epochs "$EPOCHS" --only-zeros --batch-aware --log "$WORK/late_batch_aware.log.tsv"
  row late_all_entries --epochs "$EPOCHS" --log "$WORK/late_all_entries.log.tsv"
  row late_batch_aware_all_entries --epochs "$EPOCHS" --batch-aware --log "$WORK/late_batch_aware_all_entries.log.tsv"
  row gene-mean --method gene-mean
  row knn15 --method knn --knn 15
  row knn15_zeros_only --method knn --knn 15 --only-zeros
  jq -r "$R"'["ref:" + .method, "-", "-", "-", "-", "-", (.mse_heldout | r(10000)),
          (.median_pearson_gene | r(1000)), (.median_pearson_cell | r(1000)), "-", "-", "-"] | @tsv' "$REF"
} | column -t -s $'\t'
echo "(late = decoder output at the zeros, observed values kept (--only-zeros); *_all_entries = decoder output"
echo " everywhere; _ho = Pearson over the held-out entries only; batch_slope: see the top of this script)"
echo "load average after the accuracy runs: $(load)"
echo

echo "## Speed: 10,000 cells x 949 genes (simulated, 2 batches), G-800-400-800-G, batch 256"
"$BIN/cellweave-simulate" -q -o "$WORK/sim.arrow" --cells 10000 --genes 949 --batches 2 --density 0.33 --dropout 0.7 --seed 1
"$BIN/cellweave-simulate" -q -o "$WORK/dense.arrow" --cells 10000 --genes 949 --batches 2 --density 0.33 --seed 1
speed() {
  local name=$1 input=$2 threads=$3; shift 3
  local log=$WORK/speed_$name.tsv
  impute "speed_$name" "$WORK/$input.arrow" --threads "$threads" --log "$log" "$@"
  # within_1pct: epochs and seconds until the validation loss first came within 1% of its best.
  awk -F'\t' -v n="$name" -v t="$threads" -v w="$(cat "$WORK/speed_$name.wall")" -v m="$(mib "speed_$name")" '
    '"$COLS"'
    NR > 1 { e++; v[e] = $col["val_loss"]; s = $col["seconds"]; c[e] = c[e - 1] + s
             if ($col["best"] == "true") b = $col["epoch"]; if (e == 1 || s < mn) mn = s; if (e == 1 || v[e] < best) best = v[e] }
    END { for (i = 1; i <= e; i++) if (v[i] <= 1.01 * best) { k = i; break }
          printf "%s\t%s\t%d\t%s\t%.2f\t%.2f\t%d (%.0f s)\t%.1f\t%.1f\t%d\n", n, t, e, b, c[e] / e, mn, k, c[k], c[e], w, m }' "$log"
}
{
  printf 'run\tthreads\tepochs\tbest_epoch\tmean_s/epoch\tmin_s/epoch\twithin_1pct_of_best\ttrain_s\twall_s\tpeak_MiB\n'
  speed 5_epochs sim "$THREADS" --epochs 5 --patience 0
  speed 5_epochs_1_thread sim 1 --epochs 5 --patience 0
  speed 5_epochs_batch_aware sim "$THREADS" --epochs 5 --patience 0 --batch-aware
  speed 5_epochs_density_0.33 dense "$THREADS" --epochs 5 --patience 0
  speed autograd_1_epoch sim "$THREADS" --epochs 1 --engine autograd
  speed to_convergence sim "$THREADS" --epochs "$EPOCHS" --patience 10
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
echo " train_s = sum of epoch times; wall_s adds reading, the final imputation of all cells and writing;"
echo " peak_MiB = peak resident memory of the process)"
echo "load average at the end: $(load)"
