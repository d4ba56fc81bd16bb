#!/usr/bin/env bash
# Benchmark: import + filter + normalize + hvg as four cellweave processes (the way a
# workflow runs them) against scanpy's read_h5ad + the same four steps in one process,
# on one simulated matrix exported to .h5ad. The two sides run alternately REPEAT times,
# each from the same state (the .h5ad in the page cache, no outputs of an earlier run:
# a workflow runs a stage on paths that do not exist yet, as Snakemake deletes a job's old
# outputs first and Nextflow uses a new work directory); the best and the median run of
# each side are reported, with the load average beside every run (other jobs share the machine).
#
#   bench/preprocess.sh [CELLS=100000] [GENES=20000]
#   env: BENCH_DIR (work folder, default target/bench-preprocess), CARGO_TARGET_DIR, THREADS (default 2),
#        PYTHON (python with scanpy; default the reference stack that scripts/test.sh builds, $CELLWEAVE_REF_ENV or ~/.cache/cellweave-refenv), REPEAT (runs of each
#        side, default 3; scanpy's first run also compiles and caches its numba kernels)
#
# Needs `cargo build --release --workspace` first and GNU time (/usr/bin/time; Debian: apt-get install time).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cells=${1:-100000}
genes=${2:-20000}
threads=${THREADS:-2}
dir=${BENCH_DIR:-$root/target/bench-preprocess}
py=${PYTHON:-${CELLWEAVE_REF_ENV:-$HOME/.cache/cellweave-refenv}/bin/python}
repeat=${REPEAT:-3}
bin=${CARGO_TARGET_DIR:-$root/target}/release
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
have_scanpy=0
if [ -x "$py" ] && "$py" -c "import scanpy" 2>/dev/null; then
  have_scanpy=1
else
  echo "no python with scanpy at $py (set PYTHON): cellweave side only" >&2
fi
load() { cut -d' ' -f1 /proc/loadavg; }
# every run starts with the input in the page cache (cellweave-import drops the pages it has
# read) and without the outputs of the run before (deleted, untimed, before either side runs)
warm() {
  rm -f "$dir"/raw.arrow "$dir"/filtered.arrow "$dir"/normalized.arrow "$dir"/hvg.arrow "$dir"/genes.arrow
  cat "$data.h5ad" > /dev/null
}

# one cellweave step: wall, user, sys seconds and peak RSS (MB) appended to $dir/cw_$run.tsv
step() {
  local run=$1 name=$2; shift 2
  /usr/bin/time -f "%e %U %S %M" -o "$dir/time.txt" "$bin/cellweave-$name" "$@" --threads "$threads" -q
  read -r wall user sys kb < "$dir/time.txt"
  echo -e "$name\t$wall\t$user\t$sys\t$((kb / 1024))" >> "$dir/cw_$run.tsv"
}
: > "$dir/runs.tsv"
for run in $(seq "$repeat"); do
  warm
  : > "$dir/cw_$run.tsv"
  l0=$(load)
  step "$run" import "$data.h5ad" -o "$dir/raw.arrow"
  step "$run" filter "$dir/raw.arrow" -o "$dir/filtered.arrow"
  step "$run" normalize "$dir/filtered.arrow" -o "$dir/normalized.arrow"
  step "$run" hvg "$dir/normalized.arrow" -o "$dir/hvg.arrow" --genes-out "$dir/genes.arrow"
  echo -e "cw\t$run\t$l0\t$(load)" >> "$dir/runs.tsv"
  if [ "$have_scanpy" = 1 ]; then
    warm
    l0=$(load)
    OMP_NUM_THREADS=$threads NUMBA_NUM_THREADS=$threads /usr/bin/time -f "%e %U %S %M" -o "$dir/time_py_$run.txt" \
      "$py" "$root/bench/preprocess_scanpy.py" "$data.h5ad" > "$dir/scanpy_$run.json" 2> "$dir/scanpy.log"
    echo -e "py\t$run\t$l0\t$(load)" >> "$dir/runs.tsv"
  fi
done

python3 - "$dir" "$cells" "$genes" "$threads" "$have_scanpy" "$repeat" <<'PY'
import json, os, sys
d, cells, genes, threads, have, repeat = sys.argv[1:4] + [sys.argv[4], sys.argv[5] == "1", int(sys.argv[6])]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))) / 2**20
runs = [l.split("\t") for l in open(f"{d}/runs.tsv").read().split("\n") if l]
load = {(k, int(r)): f"{a}-{b}" for k, r, a, b in runs}
cw = {r: [l.split("\t") for l in open(f"{d}/cw_{r}.tsv").read().split("\n") if l] for r in range(1, repeat + 1)}
tot = {r: sum(float(s[1]) for s in v) for r, v in cw.items()}
best = min(tot, key=tot.get)
def median(v):
    v = sorted(v)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2
print(f"data: {cells} cells x {genes} genes, ~5% non-zero, simulated (cellweave-simulate --seed 0), "
      f".h5ad {os.path.getsize(f'{d}/sim_{cells}x{genes}.h5ad')/2**20:.0f} MiB")
print(f"machine: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB; --threads {threads}; {repeat} runs of each side, "
      f"alternating, best shown")
print("cellweave runs (s, load average before-after): "
      + ", ".join(f"{tot[r]:.2f} ({load[('cw', r)]})" for r in sorted(tot)))
sp, pyt = {}, {}
if have:
    for r in range(1, repeat + 1):
        w, u, s, kb = open(f"{d}/time_py_{r}.txt").read().split()[:4]
        pyt[r] = (float(w), float(u) + float(s), int(kb) // 1024)
    pbest = min(pyt, key=lambda r: pyt[r][0])
    sp = json.load(open(f"{d}/scanpy_{pbest}.json"))
    print("scanpy runs (s, load average before-after):    "
          + ", ".join(f"{pyt[r][0]:.2f} ({load[('py', r)]})" for r in sorted(pyt)))
print()
print(f"{'step':<22}{'cellweave s':>12}{'CPU s':>7}{'peak MB':>9}   {'scanpy step':<24}{'s':>7}")
pairs = [["read_h5ad"], ["filter_genes"], ["normalize_total", "log1p"], ["highly_variable_genes"]]
for (name, wall, user, sys_, mb), keys in zip(cw[best], pairs):
    line = f"{name:<22}{float(wall):>12.2f}{float(user) + float(sys_):>7.2f}{int(mb):>9}"
    if have:
        line += f"   {'+'.join(keys):<24}{sum(sp.get(k, 0) for k in keys):>7.2f}"
    print(line)
peak = max(int(s[4]) for s in cw[best])
cpu_cw = sum(float(s[2]) + float(s[3]) for s in cw[best])
print(f"{'total (4 processes)':<22}{tot[best]:>12.2f}{cpu_cw:>7.2f}{peak:>9}")
if have:
    wall, cpu_py, mb = pyt[pbest]
    steps = sum(v for k, v in sp.items() if k not in ("import_python_packages", "shape_out"))
    print()
    print(f"scanpy, one process: {wall:.2f} s wall, {cpu_py:.2f} s CPU (Python start and imports "
          f"{sp['import_python_packages']:.2f} s, read + 4 steps {steps:.2f} s), peak {mb} MB")
    print(f"speed-up end to end (process wall): {wall/tot[best]:.1f}x; vs read + 4 steps only: {steps/tot[best]:.1f}x; "
          f"CPU time: {cpu_py/cpu_cw:.1f}x; peak memory ratio: {peak/mb:.2f}")
    mcw, mpy = median(tot.values()), median(v[0] for v in pyt.values())
    print(f"medians: cellweave {mcw:.2f} s, scanpy {mpy:.2f} s: {mpy/mcw:.1f}x")
PY
