#!/usr/bin/env bash
# Benchmark of cellweave-score: one process scoring one embedding with the full metric set
# (the 13 scIB metrics of scib-metrics 0.5 incl. pcr_comparison, the CLAIRE set, aggregates;
# exact kNN), as a workflow step runs it.
#
# 1. Synthetic embeddings (bench/score_synth.py: 50 dimensions, 12 cell types, 4 batches,
#    mid-range scores) of 5,000 and 100,000 cells, each with an "unintegrated" twin (larger
#    batch shift, same cells) for pcr_comparison.
# 2. cellweave-score on each, with all cores and with one thread (THREADS_LIST): wall time,
#    CPU time (user + sys), peak memory (/usr/bin/time -v); 5,000 cells: best of REPEATS runs,
#    100,000 cells: best of REPEATS_100K runs; the load average before each run (the machine
#    is shared: wall times include contention, and on a loaded machine one thread can beat
#    two).
# 3. Beside them, scib-metrics 0.5.10 as recorded in ../shared/reference/*/score_*.json
#    (exact kNN, every metric called in a fresh process: the sum of its `timings_s`).
# 4. With --with-scib and the reference Python present: scib-metrics itself on the same
#    5,000-cell embedding (../shared/reference/tools/score.py --knn exact --repeat 2: a fresh
#    process, and the second, warm run inside it), and the largest differences between its
#    scores and cellweave-score's.
#
# usage: bench/score.sh [--with-scib]   (after `cargo build --release --workspace`)
# env:   CELLWEAVE_SHARED, CARGO_TARGET_DIR, PYTHON (with numpy; default: the reference Python
#        or python3), REF_PYTHON (scib-metrics; default ~/.cache/cellweave-refenv/bin/python),
#        REPEATS (default 3), REPEATS_100K (default 1), SIZES (default "5000 100000"),
#        THREADS_LIST (default "all 1")
set -euo pipefail
. "$(dirname "$0")/common.sh"
REF_PYTHON=${REF_PYTHON:-$HOME/.cache/cellweave-refenv/bin/python}
REPEATS=${REPEATS:-3}
REPEATS_100K=${REPEATS_100K:-1}
SIZES=${SIZES:-5000 100000}
THREADS_LIST=${THREADS_LIST:-all 1}
WITH_SCIB=0
for a in "$@"; do
  case $a in
    --with-scib) WITH_SCIB=1 ;;
    *) echo "usage: bench/score.sh [--with-scib]" >&2; exit 2 ;;
  esac
done
need_bins score
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (GNU time) for peak memory" >&2; exit 1; }
if [ -z "${PYTHON:-}" ]; then
  for p in "$REF_PYTHON" python3; do
    if command -v "$p" >/dev/null && "$p" -c "import numpy" 2>/dev/null; then PYTHON=$p; break; fi
  done
fi
[ -n "${PYTHON:-}" ] || { echo "no Python with numpy for bench/score_synth.py: set PYTHON" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "cellweave-score $("$BIN/cellweave-score" --version | awk '{print $2}'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# seconds from /usr/bin/time -v's "h:mm:ss" or "m:ss.ss".
wall_of() {
  grep -F "Elapsed (wall clock)" "$1" | awk -F': ' '{print $2}' |
    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }'
}
cpu_of() { awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$1"; }
rss_of() { awk -F': ' '/Maximum resident/ {printf "%.0f", $2 / 1024}' "$1"; }

# run_score N REPEATS THREADS: best (lowest wall) of the repeats; prints one table row and
# keeps the JSON of the best run as best_N_THREADS.json.
run_score() {
  local n=$1 reps=$2 threads=$3 best="" wall cpu rss load r t
  local targs=()
  [ "$threads" = all ] || targs=(--threads "$threads")
  for r in $(seq 1 "$reps"); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    t=$WORK/time_${n}_${threads}_$r.txt
    /usr/bin/time -v "$BIN/cellweave-score" -q "$WORK/emb/emb_$n.tsv" --obs "$WORK/emb/obs_$n.tsv" \
      --unintegrated "$WORK/pre/emb_$n.tsv" -o "$WORK/score_${n}_${threads}_$r.json" \
      "${targs[@]}" 2> "$t"
    wall=$(wall_of "$t")
    if [ -z "$best" ] || awk -v a="$wall" -v b="${best%% *}" 'BEGIN {exit !(a < b)}'; then
      best="$wall $(cpu_of "$t") $(rss_of "$t") $load $r"
    fi
  done
  read -r wall cpu rss load r <<< "$best"
  cp "$WORK/score_${n}_${threads}_$r.json" "$WORK/best_${n}_$threads.json"
  printf "| %9d | %7s | %8s | %10s | %7s | %5s | %s |\n" "$n" "$threads" "$wall" "$cpu" "$rss" "$load" "best of $reps"
  echo "$n $threads $wall" >> "$WORK/walls.txt"
}

mkdir -p "$WORK/emb" "$WORK/pre"
for n in $SIZES; do
  "$PYTHON" "$ROOT/bench/score_synth.py" "$n" "$WORK/emb" > /dev/null
  "$PYTHON" "$ROOT/bench/score_synth.py" "$n" "$WORK/pre" --batch-shift 0.8 > /dev/null
  cmp -s "$WORK/emb/obs_$n.tsv" "$WORK/pre/obs_$n.tsv" || { echo "synthetic twins differ in cells" >&2; exit 1; }
done

echo "## cellweave-score, one process, full metric set (50 dimensions, 12 types, 4 batches, exact kNN)"
echo
echo "| cells | threads | wall s | CPU s (user+sys) | peak MB | load | runs |"
echo "|---|---|---|---|---|---|---|"
for n in $SIZES; do
  reps=$REPEATS
  [ "$n" -ge 50000 ] && reps=$REPEATS_100K
  for th in $THREADS_LIST; do
    run_score "$n" "$reps" "$th"
  done
done
echo
for n in $SIZES; do
  for th in $THREADS_LIST; do
    echo "steps, $n cells, threads $th (wall s, best run):"
    python3 -c '
import json, sys
e = next(iter(json.load(open(sys.argv[1]))["embeddings"].values()))
print("  " + "; ".join(f"{k} {v:.2f}" for k, v in e["timings_s"].items() if v >= 0.01))
' "$WORK/best_${n}_$th.json"
  done
done
echo

echo "## scib-metrics 0.5.10 as recorded in ../shared/reference (fresh process per embedding, exact kNN)"
echo
python3 -c '
import glob, json, os, sys
rows = []
for p in sorted(glob.glob(os.path.join(sys.argv[1], "*", "score_*.json"))):
    j = json.load(open(p))
    t = j.get("timings_s", {})
    rows.append((os.path.basename(os.path.dirname(p)), os.path.basename(p)[6:-5], j.get("n_cells"),
                 sum(t.values()), t.get("import", 0.0), t.get("kbet_per_label", 0.0), j.get("peak_rss_mb")))
print("| data set | embedding | cells | process s (sum of timings) | import s | kbet_per_label s | peak MB |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]:,} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.0f} |")
if rows:
    s = [r[3] for r in rows]
    print(f"\nrange: {min(s):.0f}-{max(s):.0f} s per scib-metrics process")
' "$SHARED/reference"
echo

if [ "$WITH_SCIB" = 1 ]; then
  if [ ! -x "$REF_PYTHON" ] || ! "$REF_PYTHON" -c "import scib_metrics" 2>/dev/null; then
    echo "--with-scib: no scib-metrics at $REF_PYTHON (build it with ../shared/reference/tools/setup_env.sh); skipped"
  elif ! awk '$1 == 5000 {found = 1} END {exit !found}' "$WORK/walls.txt"; then
    echo "--with-scib needs 5000 in SIZES; skipped"
  else
    echo "## scib-metrics 0.5.10 on the same 5,000-cell embedding (score.py --knn exact --repeat 2)"
    echo
    load=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -v "$REF_PYTHON" "$SHARED/reference/tools/score.py" --emb "$WORK/emb/emb_5000.tsv" \
      --obs "$WORK/emb/obs_5000.tsv" --pre-emb "$WORK/pre/emb_5000.tsv" --knn exact --repeat 2 \
      --out "$WORK/scib_5000.json" > "$WORK/scib.log" 2> "$WORK/scib_time.txt"
    # cellweave-score's fastest 5,000-cell run, whichever thread count.
    read -r ours th_best < <(awk '$1 == 5000 {print $3, $2}' "$WORK/walls.txt" | sort -n | head -1)
    python3 -c '
import json, sys
scib = json.load(open(sys.argv[1]))
ours = next(iter(json.load(open(sys.argv[2]))["embeddings"].values()))
wall, cpu, rss, load, our_wall, th = sys.argv[3:9]
our_wall = float(our_wall)
first = sum(scib["timings_first_s"].values())
t = scib["timings_s"]
warm = sum(v for k, v in t.items() if k not in ("import", "read_embedding"))
once = t.get("import", 0) + t.get("read_embedding", 0) + first
print("| run | wall s | CPU s | peak MB | load |")
print("|---|---|---|---|---|")
print(f"| scib-metrics process (import + 2 repetitions) | {wall} | {cpu} | {rss} | {load} |")
print(f"| scib-metrics, import + first repetition (one scoring as a workflow step runs it) | {once:.1f} | | | |")
print(f"| scib-metrics, warm second repetition (compiled, in-process) | {warm:.1f} | | | |")
print(f"| cellweave-score (threads {th}, best run above) | {our_wall:.2f} | | | |")
print(f"\nspeed-up: {once / our_wall:.0f}x over a scib-metrics process, {warm / our_wall:.1f}x over its warm run")
tol = {k: (0.03 if ("kmeans" in k or "leiden" in k) else 0.01) for k in scib["metrics"]}
diffs = sorted(((abs(ours["metrics"][k] - v), k, v, ours["metrics"][k]) for k, v in scib["metrics"].items()
                if k in ours["metrics"]), reverse=True)
def mark(d, k):
    return " (over tolerance)" if d > tol[k] else ""
print("largest score differences (cellweave-score vs scib-metrics): " +
      "; ".join(f"{k} {o:.4f} vs {v:.4f}{mark(d, k)}" for d, k, v, o in diffs[:4]))
missing = [k for k in scib["metrics"] if k not in ours["metrics"]]
if missing:
    print("MISSING in cellweave-score: " + ", ".join(missing))
' "$WORK/scib_5000.json" "$WORK/best_5000_$th_best.json" "$(wall_of "$WORK/scib_time.txt")" \
      "$(cpu_of "$WORK/scib_time.txt")" "$(rss_of "$WORK/scib_time.txt")" "$load" "$ours" "$th_best"
  fi
  echo
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
