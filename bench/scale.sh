#!/usr/bin/env bash
# Atlas-scale benchmark (issue 18): the Snakemake workflow end to end on simulated data sets of
# growing size (cellweave-simulate: GENES genes, 8 batches, 20 cell types), with per-rule wall
# time, CPU time and peak memory from Snakemake's benchmark files, one table per size, then
# one table of all sizes with each stage's growth exponent (slope of log time and log memory
# against log cells between the smallest and the largest size).
#
# usage: bench/scale.sh                    # 10,000 and 100,000 cells
#        SIZES=10000,100000,1000000 bench/scale.sh
# env:   SIZES (cells, comma-separated), GENES (5000), THREADS (2), EPOCHS (stage-2 epochs; empty:
#        the workflow's default), PROFILE (a Snakemake profile, e.g.
#        workflows/snakemake/profiles/local-cluster), KEEP=1 keeps the work folder,
#        NICE (default 10), CARGO_TARGET_DIR.
# Output: markdown on stdout (paste into docs/scale.md), raw benchmark files under the work folder.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
SIZES=${SIZES:-10000,100000}
GENES=${GENES:-5000}
THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-}
NICE=${NICE:-10}
SMK=${SNAKEMAKE:-$ROOT/.venv/bin/snakemake}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cellweave-scale.XXXXXX")
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; fi

(cd "$ROOT" && cargo build -q --release --workspace)
[ -x "$SMK" ] || { echo "no Snakemake at $SMK (run scripts/setup.sh)" >&2; exit 1; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "threads per job: $THREADS; nice $NICE; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(on a shared machine wall times include contention: CPU seconds are the figures to trust)"
echo

summary="$WORK/summary.tsv"
: > "$summary"
for cells in ${SIZES//,/ }; do
  dir="$WORK/$cells"
  mkdir -p "$dir"
  {
    echo "outdir: results"
    echo "threads: $THREADS"
    echo "datasets:"
    echo "  sim:"
    echo "    simulate: {cells: $cells, genes: $GENES, batches: 8, cell_types: 20, seed: 1}"
    echo "    batch_key: batch"
    echo "    label_key: cell_type"
    echo "    batches: [b0, b1, b2, b3, b4, b5, b6, b7]"
    if [ -n "$EPOCHS" ]; then echo "train: {epochs: $EPOCHS}"; fi
  } > "$dir/config.yaml"
  profile=()
  if [ -n "${PROFILE:-}" ]; then profile=(--profile "$ROOT/$PROFILE"); fi
  t0=$(date +%s)
  if ! PATH="$BIN:$PATH" RAYON_NUM_THREADS=$THREADS nice -n "$NICE" "$SMK" \
      -s "$ROOT/workflows/snakemake/Snakefile" --cores "$THREADS" --directory "$dir" \
      --configfile "$dir/config.yaml" "${profile[@]}" > "$dir/snakemake.log" 2>&1; then
    echo "the workflow failed at $cells cells: see $dir/snakemake.log (KEEP=1 to keep it)" >&2
    tail -30 "$dir/snakemake.log" >&2
    exit 1
  fi
  wall=$(($(date +%s) - t0))
  echo "### $cells cells x $GENES genes, 8 batches, 20 cell types: $wall s wall end to end"
  echo
  echo "| rule | wall s | CPU s | peak RSS MB |"
  echo "|---|---:|---:|---:|"
  # Snakemake benchmark columns: s h:m:s max_rss max_vms max_uss max_pss io_in io_out mean_load cpu_time
  for f in "$dir"/results/sim/benchmarks/*.tsv; do
    rule=$(basename "$f" .tsv)
    awk -F'\t' -v rule="$rule" -v cells="$cells" -v out="$summary" 'NR == 2 {
        printf "| %s | %.1f | %.1f | %.0f |\n", rule, $1, $10, $3
        printf "%s\t%s\t%s\t%s\t%s\n", cells, rule, $1, $10, $3 >> out
      }' "$f"
  done
  scores="$dir/results/sim/scores.tsv"
  if [ -f "$scores" ]; then
    echo
    echo "scores ($scores):"
    echo
    column -t -s $'\t' "$scores" | sed 's/^/    /'
  fi
  echo
done

# All sizes in one table, with the growth exponent between the smallest and largest size.
echo "### cost per stage (wall s / peak MB) and growth exponent"
echo
# (python3, not awk: mawk has no asorti)
python3 - "$summary" <<'PY'
import math, sys
t, m, cells, rules = {}, {}, set(), set()
for line in open(sys.argv[1]):
    c, r, wall, _cpu, rss = line.rstrip("\n").split("\t")
    c = int(c)
    cells.add(c); rules.add(r)
    t[c, r], m[c, r] = float(wall), float(rss)
cs = sorted(cells)
print("| rule |" + "".join(f" {c} cells |" for c in cs) + " time exponent | memory exponent |")
print("|---|" + "---:|" * len(cs) + "---:|---:|")
for r in sorted(rules):
    line = f"| {r} |" + "".join(
        f" {t[c, r]:.1f} s / {m[c, r]:.0f} MB |" if (c, r) in t else " - |" for c in cs)
    lo, hi = cs[0], cs[-1]
    ok = len(cs) > 1 and all((c, r) in t and t[c, r] > 0 and m[c, r] > 0 for c in (lo, hi))
    if ok:
        lr = math.log(hi / lo)
        line += f" {math.log(t[hi, r] / t[lo, r]) / lr:.2f} | {math.log(m[hi, r] / m[lo, r]) / lr:.2f} |"
    else:
        line += " - | - |"
    print(line)
PY
if [ -n "${KEEP:-}" ]; then echo; echo "work folder: $WORK"; fi
