#!/usr/bin/env bash
# Benchmark of cellweave-train --model scetm: seconds per epoch on one thread, next to the
# reference PyTorch implementation (PyPI scETM 0.5.0) on the same counts and minibatch.
#
# Data: cellweave-simulate (CELLS cells x 2,000 genes, 3 batches), filtered (--min-cells 3),
# normalized and reduced to 2,000 HVGs as the pipeline does; scETM reads the raw counts of
# those genes (--counts). Both implementations train EPOCHS epochs with scETM's defaults
# (K = 50 topics, gene embedding 400, minibatch 2,000, Adam 5e-3, batch bias on); the
# figure is the mean wall time of an epoch (cellweave: the training log's seconds column;
# scETM: the training loop's time / epochs).
#
# The reference runs only when REF_PYTHON names a Python with scETM 0.5.0 and torch (e.g.
# the shared reference tools' CPU torch, ../shared/reference/tools/torchpy, with
# `pip install --no-deps scETM==0.5.0 psutil` in its venv); without it the script prints
# cellweave's figure alone and says so. The reference runs on one thread
# (torch.set_num_threads(1), OMP/OpenBLAS/MKL_NUM_THREADS=1), its log and progress lines
# silenced.
#
# usage: bench/scetm.sh            (after `cargo build --release --workspace`)
# env:   CELLS (default 10000), EPOCHS (default 20), REF_PYTHON, CARGO_TARGET_DIR
set -euo pipefail
. "$(dirname "$0")/common.sh"
CELLS=${CELLS:-10000}
EPOCHS=${EPOCHS:-20}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
need_bins simulate filter normalize hvg train export
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared: wall times include contention)"

"$BIN/cellweave-simulate" -q --cells "$CELLS" --genes 2000 --batches 3 --seed 1 -o "$WORK/raw.arrow"
"$BIN/cellweave-filter" -q "$WORK/raw.arrow" --min-cells 3 -o "$WORK/filtered.arrow"
"$BIN/cellweave-normalize" -q "$WORK/filtered.arrow" -o "$WORK/norm.arrow"
"$BIN/cellweave-hvg" -q "$WORK/norm.arrow" --n-top-genes 2000 --batch-key batch -o "$WORK/hvg.arrow"

"$BIN/cellweave-train" -q "$WORK/hvg.arrow" --model scetm --counts "$WORK/filtered.arrow" \
  -o "$WORK/model" --embedding "$WORK/emb.arrow" --epochs "$EPOCHS" --threads 1 \
  --checkpoint-every 0 --log "$WORK/log.tsv"
ours=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") c = i; next }
                   { s += $c; n++ } END { printf "%.3f", s / n }' "$WORK/log.tsv")
genes=$(awk -F': ' '/^n_genes:/ { print $2; exit }' "$WORK/model/card.yaml")
echo "cellweave scetm: $CELLS cells x $genes genes (HVGs), $EPOCHS epochs: $ours s per epoch (1 thread)"

if [ -z "${REF_PYTHON:-}" ] || ! "$REF_PYTHON" -c 'import scETM, torch' 2>/dev/null; then
  echo "reference scETM 0.5.0: not run (set REF_PYTHON to a Python with scETM 0.5.0 and torch)"
  exit 0
fi
"$BIN/cellweave-export" -q "$WORK/filtered.arrow" -o "$WORK/filtered.h5ad"
"$BIN/cellweave-export" -q "$WORK/hvg.arrow" -o "$WORK/hvg.h5ad"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
  "$REF_PYTHON" - "$WORK/filtered.h5ad" "$WORK/hvg.h5ad" "$EPOCHS" "$WORK/ckpt" <<'EOF'
import contextlib, io, logging, sys, time
import anndata, torch
from scETM import scETM, UnsupervisedTrainer
torch.set_num_threads(1)
logging.disable(logging.INFO)
counts, hvg, epochs, ckpt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
a = anndata.read_h5ad(counts)
a = a[:, anndata.read_h5ad(hvg).var_names].copy()
a.obs["batch_indices"] = a.obs["batch"].astype("category").cat.codes
model = scETM(a.n_vars, a.obs["batch"].nunique())
trainer = UnsupervisedTrainer(model, a, init_lr=5e-3, batch_size=2000, seed=0, ckpt_dir=ckpt)
t0 = time.time()
with contextlib.redirect_stdout(io.StringIO()):
    trainer.train(n_epochs=epochs, eval_every=epochs, n_samplers=1, eval=False, save_model_ckpt=False)
print(f"reference scETM 0.5.0 (torch {torch.__version__}): {(time.time() - t0) / epochs:.3f} s per epoch (1 thread)")
EOF
