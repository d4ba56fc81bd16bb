#!/usr/bin/env bash
# GPU check (issue 18): train CLAIRE (cellweave-train) and LATE (cellweave-impute --method late)
# on the same small simulated data once with --device cpu and once with --device cuda, then
# compare the per-epoch loss curves and the embeddings / imputed values.
#
# Needs an NVIDIA GPU and a build with the CUDA feature:
#   cargo build --release --workspace --features cellweave-models/cuda
# (the CUDA toolkit: nvcc on PATH and CUDA_ROOT / CUDA_PATH, e.g. from the PyPI wheels
#  nvidia-cuda-nvcc-cu12, nvidia-cuda-runtime-cu12, nvidia-cublas-cu12, nvidia-curand-cu12;
#  see .ci/run). Exits 2 when no GPU or no CUDA build is found.
#
# usage: bench/gpu.sh        env: CELLS (2000), EPOCHS (10), CARGO_TARGET_DIR, KEEP=1
# What to expect: the same seed gives the same initial weights and minibatches on both devices,
# but GPU kernels sum in another order, so the curves agree closely (relative loss difference
# per epoch reported; under 5% is the pass mark) and the embeddings agree up to those
# rounding differences (reported: mean cosine similarity of each cell's two embeddings, and
# the agreement of their 15-NN graphs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
CELLS=${CELLS:-2000}
EPOCHS=${EPOCHS:-10}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cellweave-gpu.XXXXXX")
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; fi
PY=${PYTHON:-python3}

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "bench/gpu.sh: no NVIDIA GPU visible (nvidia-smi -L failed): nothing run" >&2
  exit 2
fi
nvidia-smi -L
for t in simulate normalize hvg pairs train impute; do
  [ -x "$BIN/cellweave-$t" ] || { echo "missing $BIN/cellweave-$t (build first)" >&2; exit 1; }
done

"$BIN/cellweave-simulate" -q -o "$WORK/raw.arrow" --cells "$CELLS" --genes 1500 --batches 3 --cell-types 6 --seed 1
"$BIN/cellweave-normalize" -q "$WORK/raw.arrow" -o "$WORK/norm.arrow"
"$BIN/cellweave-hvg" -q "$WORK/norm.arrow" -o "$WORK/hvg.arrow"
"$BIN/cellweave-pairs" -q "$WORK/hvg.arrow" -o "$WORK/pairs.arrow"

status=0
for dev in cpu cuda; do
  echo "== CLAIRE on $dev"
  if ! /usr/bin/time -f "%e s wall, %M kB peak" "$BIN/cellweave-train" -q "$WORK/hvg.arrow" --pairs "$WORK/pairs.arrow" \
      -o "$WORK/claire_$dev" --embedding "$WORK/claire_$dev.arrow" --log "$WORK/claire_log_$dev.tsv" \
      --epochs "$EPOCHS" --device "$dev" --seed 0; then
    echo "CLAIRE failed on $dev (a build without --features cellweave-models/cuda refuses cuda)" >&2
    status=1
  fi
  echo "== LATE on $dev"
  if ! /usr/bin/time -f "%e s wall, %M kB peak" "$BIN/cellweave-impute" -q "$WORK/raw.arrow" --method late \
      -o "$WORK/late_$dev.arrow" --log "$WORK/late_log_$dev.tsv" --epochs "$EPOCHS" --device "$dev" --seed 0; then
    echo "LATE failed on $dev" >&2
    status=1
  fi
done
[ "$status" = 0 ] || exit "$status"

# Compare loss curves (TSV logs) and outputs (Arrow tables; pyarrow/numpy needed).
"$PY" - "$WORK" <<'PY'
import csv, sys
import numpy as np, pyarrow.ipc as ipc
w = sys.argv[1]

def log(path):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    key = next(k for k in rows[0] if "loss" in k)
    return key, np.array([float(r[key]) for r in rows])

def matrix(path):
    t = ipc.open_file(path).read_all()
    cols = [c for c in t.column_names if t.schema.field(c).type in ("float", "double")
            or str(t.schema.field(c).type).startswith(("float", "double", "fixed_size_list", "list"))]
    parts = []
    for c in cols:
        a = t.column(c).to_pylist()
        parts.append(np.array(a, dtype=np.float64).reshape(len(a), -1))
    return np.hstack(parts)

ok = True
for model in ["claire", "late"]:
    key, cpu = log(f"{w}/{model}_log_cpu.tsv")
    _, gpu = log(f"{w}/{model}_log_cuda.tsv")
    n = min(len(cpu), len(gpu))
    rel = np.abs(cpu[:n] - gpu[:n]) / np.maximum(np.abs(cpu[:n]), 1e-12)
    print(f"{model}: {key} per epoch, cpu {np.round(cpu[:n], 4).tolist()}")
    print(f"{model}: {key} per epoch, gpu {np.round(gpu[:n], 4).tolist()}")
    print(f"{model}: max relative loss difference {rel.max():.4f}")
    ok &= bool(rel.max() < 0.05)
a = matrix(f"{w}/claire_cpu.arrow"); b = matrix(f"{w}/claire_cuda.arrow")
cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
print(f"claire: embedding cosine cpu vs gpu: mean {cos.mean():.4f}, min {cos.min():.4f}")
def knn(x, k=15):
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1); np.fill_diagonal(d, np.inf)
    return np.argsort(d, 1)[:, :k]
ka, kb = knn(a), knn(b)
overlap = np.mean([len(set(p) & set(q)) / 15 for p, q in zip(ka, kb)])
print(f"claire: 15-NN overlap cpu vs gpu {overlap:.4f}")
a = matrix(f"{w}/late_cpu.arrow"); b = matrix(f"{w}/late_cuda.arrow")
print(f"late: imputed values max abs difference {np.abs(a - b).max():.4g}, correlation {np.corrcoef(a.ravel(), b.ravel())[0, 1]:.5f}")
print("PASS" if ok else "FAIL: loss curves differ by more than 5%")
sys.exit(0 if ok else 1)
PY
