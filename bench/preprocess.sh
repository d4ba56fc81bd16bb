#!/usr/bin/env bash
# Benchmark: import + filter + normalize + hvg as four cellweave processes (the way a
# workflow runs them) against scanpy's read_h5ad + the same four steps in one process,
# on one simulated matrix exported to .h5ad.
#
#   bench/preprocess.sh [CELLS=100000] [GENES=20000]
#   env: BENCH_DIR (work folder, default target/bench-preprocess), THREADS (default 2),
#        PYTHON (python with scanpy; default ../venv-ref/bin/python), REPEAT (scanpy runs, default 2:
#        the first one compiles and caches scanpy's numba kernels, the last one is reported)
#
# Needs `cargo build --release --workspace` first and GNU time (/usr/bin/time; Debian: apt-get install time).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cells=${1:-100000}
genes=${2:-20000}
threads=${THREADS:-2}
dir=${BENCH_DIR:-$root/target/bench-preprocess}
py=${PYTHON:-$root/../venv-ref/bin/python}
repeat=${REPEAT:-2}
bin=$root/target/release
for t in simulate export import filter normalize hvg; do
  [ -x "$bin/cellweave-$t" ] || { echo "missing $bin/cellweave-$t: run cargo build --release --workspace" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "GNU time is missing (apt-get install -y time)" >&2; exit 1; }
mkdir -p "$dir"
data=$dir/sim_${cells}x${genes}
if [ ! -s "$data.h5ad" ]; then
  echo "simulating $cells cells x $genes genes (~5% non-zero) ..." >&2
  "$bin/cellweave-simulate" -o "$data.arrow" --cells "$cells" --genes "$genes" --batches 3 --cell-types 6 \
    --density 0.05 --seed 0 --threads "$threads" -q
  "$bin/cellweave-export" "$data.arrow" -o "$data.h5ad" -q
  rm -f "$data.arrow"
fi

# one cellweave step: wall seconds and peak RSS (MB) appended to $dir/cw.tsv
: > "$dir/cw.tsv"
step() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$dir/time.txt" "$bin/cellweave-$name" "$@" --threads "$threads" -q
  read -r wall kb < "$dir/time.txt"
  echo -e "$name\t$wall\t$((kb / 1024))" >> "$dir/cw.tsv"
}
sync
step import "$data.h5ad" -o "$dir/raw.arrow"
step filter "$dir/raw.arrow" -o "$dir/filtered.arrow"
step normalize "$dir/filtered.arrow" -o "$dir/normalized.arrow"
step hvg "$dir/normalized.arrow" -o "$dir/hvg.arrow" --genes-out "$dir/genes.arrow"

have_scanpy=0
if [ -x "$py" ] && "$py" -c "import scanpy" 2>/dev/null; then
  have_scanpy=1
  for i in $(seq "$repeat"); do
    OMP_NUM_THREADS=$threads NUMBA_NUM_THREADS=$threads /usr/bin/time -f "%e %M" -o "$dir/time_py.txt" \
      "$py" "$root/bench/preprocess_scanpy.py" "$data.h5ad" > "$dir/scanpy.json" 2> "$dir/scanpy.log"
  done
else
  echo "no python with scanpy at $py (set PYTHON): cellweave side only" >&2
fi

python3 - "$dir" "$cells" "$genes" "$threads" "$have_scanpy" <<'PY'
import json, os, sys, platform
d, cells, genes, threads, have = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
cw = [l.split("\t") for l in open(f"{d}/cw.tsv").read().split("\n") if l]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))) / 2**20
print(f"data: {cells} cells x {genes} genes, ~5% non-zero, simulated (cellweave-simulate --seed 0), .h5ad {os.path.getsize(f'{d}/sim_{cells}x{genes}.h5ad')/2**20:.0f} MiB")
print(f"machine: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB; --threads {threads}")
print()
print(f"{'step':<22}{'cellweave s':>12}{'peak MB':>9}   {'scanpy step':<24}{'s':>7}")
sp = json.load(open(f"{d}/scanpy.json")) if have else {}
pairs = [("import", ["read_h5ad"]), ("filter", ["filter_genes"]), ("normalize", ["normalize_total", "log1p"]),
         ("hvg", ["highly_variable_genes"])]
tot = 0.0
for (name, wall, mb), (_, keys) in zip(cw, pairs):
    tot += float(wall)
    s = sum(sp.get(k, 0) for k in keys)
    print(f"{name:<22}{float(wall):>12.2f}{int(mb):>9}   {'+'.join(keys):<24}{s:>7.2f}" if have else f"{name:<22}{float(wall):>12.2f}{int(mb):>9}")
peak = max(int(r[2]) for r in cw)
print(f"{'total (4 processes)':<22}{tot:>12.2f}{peak:>9}")
if have:
    wall, kb = open(f"{d}/time_py.txt").read().split()[:2]
    steps = sum(v for k, v in sp.items() if k not in ("import_python_packages", "shape_out"))
    print()
    print(f"scanpy, one process: {float(wall):.2f} s wall (Python start and imports {sp['import_python_packages']:.2f} s, "
          f"read + 4 steps {steps:.2f} s), peak {int(kb)//1024} MB")
    print(f"speed-up end to end (process wall): {float(wall)/tot:.1f}x; vs read + 4 steps only: {steps/tot:.1f}x; "
          f"peak memory ratio: {peak/(int(kb)/1024):.2f}")
PY
