#!/usr/bin/env bash
# Benchmark of cellweave-import / cellweave-export (wall time and peak memory per process).
#
# 1. The largest shared data set (cellbench_2tech_fullgenes, 499 cells x 15,073 genes,
#    3.1 M non-zeros) from its 10x folder and from its .h5ad.
# 2. A simulated 100,000 cells x 20,000 genes matrix (~5% non-zero, ~1e8 non-zeros):
#    export to .h5ad and to a 10x folder, import both back, and anndata.read_h5ad of the same
#    .h5ad for comparison (when a Python with anndata is there).
#
# usage: bench/io.sh        (after `cargo build --release --workspace`)
# env:   THREADS (default 2), CELLS (100000), GENES (20000), CELLWEAVE_SHARED, CARGO_TARGET_DIR,
#        CELLWEAVE_PYTHON (default ../venv-ref/bin/python, then python3)
set -euo pipefail
. "$(dirname "$0")/common.sh"
THREADS=${THREADS:-2}
CELLS=${CELLS:-100000}
GENES=${GENES:-20000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
need_bins import export simulate
PY=${CELLWEAVE_PYTHON:-}
for p in "$ROOT/../venv-ref/bin/python" python3; do
  if [ -z "$PY" ] && "$p" -c 'import anndata' 2>/dev/null; then PY=$p; fi
done

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-48s %9s %11s\n' step seconds "peak MiB"
measure() { # name, command...
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/log" || { cat "$WORK/log" >&2; exit 1; }
  read -r secs kb <"$WORK/time"
  printf '%-48s %9.2f %11.0f\n' "$name" "$secs" "$((kb / 1024))"
}

D=$SHARED/data/cellbench_2tech_fullgenes
if [ -d "$D" ]; then
  measure "import cellbench_2tech 10x folder (3.1M nnz)" "$BIN/cellweave-import" --threads "$THREADS" "$D" -o "$WORK/a.arrow"
  measure "import cellbench_2tech .h5ad (3.1M nnz)" "$BIN/cellweave-import" --threads "$THREADS" "$D/cellbench_2tech_fullgenes.h5ad" -o "$WORK/b.arrow"
else
  echo "(shared data not found at $SHARED: skipping the shared data set)"
fi

measure "simulate ${CELLS}x${GENES}" "$BIN/cellweave-simulate" --threads "$THREADS" --cells "$CELLS" --genes "$GENES" --seed 1 -o "$WORK/sim.arrow"
measure "export .h5ad" "$BIN/cellweave-export" --threads "$THREADS" "$WORK/sim.arrow" -o "$WORK/sim.h5ad"
measure "import .h5ad" "$BIN/cellweave-import" --threads "$THREADS" "$WORK/sim.h5ad" -o "$WORK/h5ad.arrow"
NNZ=$(grep -o '[0-9]* non-zeros' "$WORK/log" | tail -1 || true)
measure "export 10x folder (gzip level 1)" "$BIN/cellweave-export" --threads "$THREADS" "$WORK/sim.arrow" -o "$WORK/mtx"
measure "import 10x folder" "$BIN/cellweave-import" --threads "$THREADS" "$WORK/mtx" -o "$WORK/mtx.arrow"
if [ -n "$PY" ]; then
  measure "anndata.read_h5ad (Python, same file)" "$PY" -c "import anndata, sys; anndata.read_h5ad(sys.argv[1])" "$WORK/sim.h5ad"
else
  echo "(no Python with anndata: skipping the anndata comparison)"
fi
echo "data: $NNZ; $(du -h "$WORK/sim.h5ad" | cut -f1) .h5ad, $(du -sh "$WORK/mtx" | cut -f1) 10x folder"
