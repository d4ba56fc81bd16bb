#!/usr/bin/env bash
# One scETM training step, cellweave vs PyPI scETM 0.5.0 (PyTorch), from the same weights and
# minibatch with the same dropout mask and noise: loss, NLL, KL, every gradient, the parameters
# after Adam's first update and the BatchNorm running statistics, each against a tolerance
# (bench/scetm_torch_step.py prints the table; the exit status is 1 when a check fails).
#
# Data: cellweave-simulate (CELLS cells x GENES genes, 3 batches, seed 1), filtered (--min-cells
# 3), normalized, HVGS genes selected with the batch key; scETM reads the raw counts of those
# genes. The weights: cellweave-train --model scetm at scETM's shape (K 50, L 400, hidden 128,
# batch bias) after one epoch (so they are not the initial draw), read by scETM from the model
# directory's model.safetensors under its own parameter names. The step takes every cell as one
# minibatch.
#
# Needs a Python with torch and scETM 0.5.0 (TORCH_PYTHON, default the shared reference tools'
# torchpy: ../shared/reference/tools/torchpy, with `pip install --no-deps scETM==0.5.0 psutil` in
# its venv). Not run in CI (no torch there): the CI test of the step is the NumPy transcription
# (tools/cellweave-models/src/scetm/oracle.py, scetm::tests).
#
# usage: bench/scetm_torch_step.sh      (after `cargo build --release --workspace`; it builds the
#                                        scetm_step example itself)
# env:   CELLS (default 1000), GENES (default 1000), HVGS (default 500), KL_WEIGHT (default 0.5,
#        large enough that the KL term's gradients count), TORCH_PYTHON, CARGO_TARGET_DIR
set -euo pipefail
. "$(dirname "$0")/common.sh"
CELLS=${CELLS:-1000}
GENES=${GENES:-1000}
HVGS=${HVGS:-500}
KL_WEIGHT=${KL_WEIGHT:-0.5}
PY=${TORCH_PYTHON:-$SHARED/reference/tools/torchpy}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
need_bins simulate filter normalize hvg train export
(cd "$ROOT" && cargo build -q --release -p cellweave-models --example scetm_step)
STEP=$BIN/examples/scetm_step
if ! "$PY" -c 'import scETM, torch' 2>/dev/null; then
  echo "no torch with scETM 0.5.0 at $PY (set TORCH_PYTHON)" >&2
  exit 2
fi

"$BIN/cellweave-simulate" -q --cells "$CELLS" --genes "$GENES" --batches 3 --seed 1 -o "$WORK/raw.arrow"
"$BIN/cellweave-filter" -q "$WORK/raw.arrow" --min-cells 3 -o "$WORK/filtered.arrow"
"$BIN/cellweave-normalize" -q "$WORK/filtered.arrow" -o "$WORK/norm.arrow"
"$BIN/cellweave-hvg" -q "$WORK/norm.arrow" --n-top-genes "$HVGS" --batch-key batch -o "$WORK/hvg.arrow"
"$BIN/cellweave-train" -q "$WORK/hvg.arrow" --model scetm --counts "$WORK/filtered.arrow" \
  -o "$WORK/model" --embedding "$WORK/emb.arrow" --epochs 1 --threads 1 --checkpoint-every 0
"$BIN/cellweave-export" -q "$WORK/filtered.arrow" -o "$WORK/filtered.h5ad"
"$BIN/cellweave-export" -q "$WORK/hvg.arrow" -o "$WORK/hvg.h5ad"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1 \
  "$PY" "$ROOT/bench/scetm_torch_step.py" "$WORK/filtered.h5ad" "$WORK/hvg.h5ad" \
  "$WORK/model" "$STEP" "$WORK" "$KL_WEIGHT"
