#!/usr/bin/env bash
# Benchmark of cellweave's training steps against PyTorch, both timed in this run.
#
# 1. CLAIRE's training step at the reference shape (256 anchors -> 2 x 256 views, 2,000 genes,
#    encoder 2000-500-250-128, queue 2,048, symmetric MoCo, Adam) on random dense inputs:
#    cellweave's fused CPU step (Moco::step_cpu, examples/claire_step, at cellweave-train's default
#    --precision auto: the first-layer forward product on bf16 operands where the CPU has
#    AVX512_BF16; the same step with --precision f32 is timed and listed too) against CLAIRE's own
#    PyTorch code (../shared/reference/tools/claire_step_bench.py, run unchanged through
#    bench/torch_step_cpu.py, which adds its CPU time). Thread counts 1 and 2 (RAYON, OMP, MKL,
#    OpenBLAS and torch all pinned to the same count); ROUNDS rounds, the two sides alternating
#    inside each round. Per round each side gives its mean seconds per step over STEPS steps
#    (after a warm-up); the table has the median and mean of those over the rounds, the CPU
#    seconds per step (all threads; the figure that does not count other processes on a shared
#    machine), and the ratios PyTorch / cellweave.
# 2. The candle-ops step (Moco::step, the one a CUDA device runs) on the CPU, once per thread
#    count, in the first round.
# 3. LATE's training epoch (10,000 cells x 949 genes, 9.8% non-zero, G-800-400-800-G, batch
#    256, 8,500 training + 1,500 validation cells): cellweave-impute (seconds per epoch from its
#    log) against bench/late_epoch_torch.py (LATE transcribed to PyTorch: LATE's own
#    TensorFlow 1.x code does not run here), alternating, LATE_ROUNDS rounds of LATE_EPOCHS
#    epochs (the first epoch of each run is left out of the wall figures; cellweave's CPU
#    figure is its whole run's CPU time / epochs, an upper bound).
# 4. With RUNS=1: whole default CLAIRE runs on the pipeline outputs of cellbench_3tech and
#    kang_ifnb and a simulated 20,000-cell table (wall time, seconds per step).
#
# usage: bench/train.sh              (builds what it needs; sets up the reference torch, ~1 GB,
#                                     cached in $TORCHROOT, default ~/.cache/cellweave-torch)
# env:   ROUNDS (3), STEPS (40), THREADS_LIST ("1 2"), LATE_ROUNDS (3), LATE_EPOCHS (3),
#        SKIP_LATE=1, RUNS=1, NO_BUILD=1 (use the binaries as built), CELLWEAVE_SHARED,
#        CARGO_TARGET_DIR, TORCHROOT
# about 6 minutes on an idle 2-core machine with the defaults (RUNS=1 adds several minutes).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
SHARED=${CELLWEAVE_SHARED:-$ROOT/../shared}
TOOLS=$SHARED/reference/tools
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-40}
THREADS_LIST=${THREADS_LIST:-1 2}
LATE_ROUNDS=${LATE_ROUNDS:-3}
LATE_EPOCHS=${LATE_EPOCHS:-3}
export TORCHROOT=${TORCHROOT:-$HOME/.cache/cellweave-torch}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

[ "${NO_BUILD:-0}" = 1 ] ||
  (cd "$ROOT" && cargo build --release --workspace -q && cargo build --release --workspace --examples -q)
if [ ! -x "$TORCHROOT/venv/bin/python" ]; then
  echo "setting up the reference PyTorch in $TORCHROOT (once, ~1 GB)"
  bash "$TOOLS/setup_torch.sh" > "$WORK/setup_torch.log" 2>&1 || { tail "$WORK/setup_torch.log"; exit 1; }
fi
TORCHPY=$TOOLS/torchpy

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (on a loaded machine compare the CPU columns)"
echo

# pinned T CMD...: run CMD with every thread pool at T threads.
pinned() {
  local t=$1; shift
  RAYON_NUM_THREADS=$t OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t "$@"
}

# Results: one line per run: bench, implementation, threads, round, wall s, cpu s (or -).
RES=$WORK/results.tsv
: > "$RES"
for r in $(seq 1 "$ROUNDS"); do
  for t in $THREADS_LIST; do
    extra=(--fast-only --also-f32)
    [ "$r" = 1 ] && extra=(--also-f32)
    pinned "$t" "$BIN/examples/claire_step" --steps "$STEPS" "${extra[@]}" > "$WORK/cw.txt"
    awk -F'\t' -v t="$t" -v r="$r" '$1 == "result" {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "claire\t%s\t%s\t%s\t%s\t%s\n", $2, t, r, v["mean_s"], v["cpu_s"] }' "$WORK/cw.txt" >> "$RES"
    pinned "$t" "$TORCHPY" "$ROOT/bench/torch_step_cpu.py" "$TOOLS/claire_step_bench.py" \
      --threads "$t" --steps "$STEPS" > "$WORK/pt.json"
    python3 "$ROOT/bench/train_table.py" row claire "$t" "$r" "$WORK/pt.json" sec_per_step \
      cpu_sec_per_step >> "$RES"
    echo "round $r, $t thread(s): $(grep -P "^claire\t\S+\t$t\t$r\t" "$RES" | cut -f2,5,6 | tr '\t\n' ' ;')"
  done
done

if [ "${SKIP_LATE:-0}" != 1 ]; then
  "$BIN/cellweave-simulate" -q -o "$WORK/late.arrow" --cells 10000 --genes 949 --batches 2 \
    --density 0.33 --dropout 0.7 --seed 1
  for r in $(seq 1 "$LATE_ROUNDS"); do
    for t in $THREADS_LIST; do
      # CPU column: the whole process's user + system time / epochs (reading the input and
      # writing the imputed matrix included, so an upper bound).
      pinned "$t" /usr/bin/time -f '%U %S' -o "$WORK/late_cpu.txt" "$BIN/cellweave-impute" -q \
        "$WORK/late.arrow" -o "$WORK/late_out.arrow" --threads "$t" --epochs "$LATE_EPOCHS" \
        --patience 0 --log "$WORK/late_log.tsv" > /dev/null
      awk -F'\t' -v t="$t" -v r="$r" -v cpu="$(tail -1 "$WORK/late_cpu.txt")" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        { e++; s[e] = $col["seconds"] }
        END { for (i = (e > 1 ? 2 : 1); i <= e; i++) { tot += s[i]; n++ }
              split(cpu, c, " ")
              printf "late\tcellweave\t%s\t%s\t%.4f\t%.4f\n", t, r, tot / n, (c[1] + c[2]) / e }' \
        "$WORK/late_log.tsv" >> "$RES"
      pinned "$t" "$TORCHPY" "$ROOT/bench/late_epoch_torch.py" --threads "$t" \
        --epochs "$LATE_EPOCHS" > "$WORK/late_pt.json"
      python3 "$ROOT/bench/train_table.py" row late "$t" "$r" "$WORK/late_pt.json" \
        mean_s_per_epoch cpu_s_per_epoch >> "$RES"
      echo "LATE round $r, $t thread(s): $(grep -P "^late\t\S+\t$t\t$r\t" "$RES" | cut -f2,5 | tr '\t\n' ' ;')"
    done
  done
fi

echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$ROOT/bench/train_table.py" table "$RES"

[ "${RUNS:-0}" = 1 ] || exit 0

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

echo
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
