#!/usr/bin/env bash
# GPU check (issue 18): train CLAIRE (cellweave-train) and LATE (cellweave-impute --method late)
# on the same simulated data once with --device cpu and once with --device cuda, then compare
# the per-epoch loss curves, the wall time per epoch, and the embeddings / imputed values.
#
# Needs an NVIDIA GPU and a CUDA build (scripts/build-cuda.sh; docs/gpu.md). The CUDA build runs
# both devices, so one set of binaries does the whole comparison. Exits 2 when no GPU is visible.
#
# usage: bench/gpu.sh [--bin DIR] [--inputs DIR] [--out DIR]
#        bench/gpu.sh --prepare DIR      only simulate/normalize/hvg/pairs into DIR (no GPU needed)
#   --bin DIR     the binaries (default: $CARGO_TARGET_DIR/release, else target/release)
#   --inputs DIR  raw.arrow, hvg.arrow and pairs.arrow made earlier by --prepare (e.g. on another
#                 machine): train and impute are then the only binaries needed
#   --out DIR     keep the logs and the summary (summary.tsv, summary.txt) there (default: a
#                 temporary directory, removed at the end)
# env: CELLS (20000), GENES (2000), EPOCHS (10), SEED (0), PYTHON (python3, with numpy and
#      pyarrow), GPU_DEVICE (cuda; `cpu` runs the comparison cpu-vs-cpu without a GPU, to check
#      this script and the run-to-run determinism).
#
# What to expect: the same seed gives the same initial weights and minibatches on both devices,
# but GPU kernels sum in another order, so the curves agree closely but not exactly (relative
# loss difference per epoch reported; under 5% is the pass mark) and the embeddings agree up to
# those rounding differences (reported: mean cosine similarity of each cell's two embeddings,
# and the overlap of their 15-NN graphs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
INPUTS="" OUTDIR="" PREPARE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --inputs) INPUTS=$2; shift 2 ;;
    --out) OUTDIR=$2; shift 2 ;;
    --prepare) PREPARE=$2; shift 2 ;;
    *) echo "bench/gpu.sh: unknown argument '$1' (see the header of $0)" >&2; exit 1 ;;
  esac
done
CELLS=${CELLS:-20000}
GENES=${GENES:-2000}
EPOCHS=${EPOCHS:-10}
SEED=${SEED:-0}
GPU=${GPU_DEVICE:-cuda}
PY=${PYTHON:-python3}
need() {
  for t in "$@"; do
    [ -x "$BIN/cellweave-$t" ] || { echo "bench/gpu.sh: missing $BIN/cellweave-$t (build first)" >&2; exit 1; }
  done
}

prepare() { # DIR
  need simulate normalize hvg pairs
  mkdir -p "$1"
  "$BIN/cellweave-simulate" -q -o "$1/raw.arrow" --cells "$CELLS" --genes "$GENES" --batches 3 --cell-types 8 --seed 1
  "$BIN/cellweave-normalize" -q "$1/raw.arrow" -o "$1/norm.arrow"
  "$BIN/cellweave-hvg" -q "$1/norm.arrow" -o "$1/hvg.arrow"
  "$BIN/cellweave-pairs" -q "$1/hvg.arrow" -o "$1/pairs.arrow"
  rm -f "$1/norm.arrow"
  echo "simulated $CELLS cells x $GENES genes, 3 batches, 8 cell types (cellweave-simulate --seed 1)" >"$1/inputs.txt"
}
if [ -n "$PREPARE" ]; then
  prepare "$PREPARE"
  cat "$PREPARE/inputs.txt"
  exit 0
fi

if [ "$GPU" != cpu ]; then
  if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "bench/gpu.sh: no NVIDIA GPU visible (nvidia-smi -L failed): nothing run" >&2
    exit 2
  fi
  nvidia-smi -L
fi
need train impute
if [ -n "$OUTDIR" ]; then
  WORK=$OUTDIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/cellweave-gpu.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
fi
if [ -z "$INPUTS" ]; then
  INPUTS=$WORK/inputs
  prepare "$INPUTS"
fi
for f in raw.arrow hvg.arrow pairs.arrow; do
  [ -s "$INPUTS/$f" ] || { echo "bench/gpu.sh: missing $INPUTS/$f (make it with --prepare)" >&2; exit 1; }
done
echo "inputs: $(cat "$INPUTS/inputs.txt" 2>/dev/null || echo "$INPUTS")"
echo "cpu: $(nproc) cores; epochs: $EPOCHS; seed: $SEED"

# Each run's wall time (start-up, loading and writing included) goes to $WORK/wall.tsv.
printf 'run\tseconds\n' >"$WORK/wall.tsv"
timed() { # NAME CMD...: runs CMD, returns its exit status
  local name=$1 t0 t1 rc=0
  shift
  t0=$(date +%s.%N)
  "$@" || rc=$?
  t1=$(date +%s.%N)
  printf '%s\t%s\n' "$name" "$(echo "$t1 - $t0" | awk '{print $1 - $3}')" >>"$WORK/wall.tsv"
  return "$rc"
}
status=0
for tag in cpu gpu; do
  dev=cpu
  [ "$tag" = cpu ] || dev=$GPU
  echo "== CLAIRE on $dev"
  if ! timed "claire_$tag" "$BIN/cellweave-train" -q "$INPUTS/hvg.arrow" --pairs "$INPUTS/pairs.arrow" \
      -o "$WORK/claire_$tag" --embedding "$WORK/claire_$tag.arrow" --log "$WORK/claire_log_$tag.tsv" \
      --epochs "$EPOCHS" --device "$dev" --seed "$SEED"; then
    echo "CLAIRE failed on $dev" >&2
    status=1
  fi
  echo "== LATE on $dev"
  if ! timed "late_$tag" "$BIN/cellweave-impute" -q "$INPUTS/raw.arrow" --method late \
      -o "$WORK/late_$tag.arrow" --log "$WORK/late_log_$tag.tsv" --epochs "$EPOCHS" --device "$dev" --seed "$SEED"; then
    echo "LATE failed on $dev" >&2
    status=1
  fi
done
# Compare what ran (a model whose run failed is reported as missing), then fail if any did.
"$PY" "$ROOT/bench/gpu_compare.py" "$WORK" || status=1
exit "$status"
