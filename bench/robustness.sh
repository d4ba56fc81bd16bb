#!/usr/bin/env bash
# Robustness benchmark of CLAIRE (issue 19): stress cases cut from the shared data and
# simulated by cellweave-simulate, CLAIRE (cellweave-pairs + cellweave-train, defaults) against
# PCA, Harmony and Scanorama (the reference stack's embed.py), all scored by cellweave-score:
# the classic scIB total (0.6 bio + 0.4 batch, exact kNN, unintegrated = PCA of the HVGs).
#
# Cases (CASES selects; bench/robustness_cases.py cuts the real ones):
#   c3_sub60       cellbench_3tech, at most 60 cells per batch (3 batches)
#   kang_sub60     kang_ifnb, at most 60 cells per batch (4 batches)
#   kang_split     kang_ifnb, every donor x condition cut into ~70-cell batches (18 batches)
#   c3_missing     cellbench_3tech, one cell line removed from each batch in turn
#   kang_missing   kang_ifnb, one cell type removed from each batch in turn
#   c3_skew        cellbench_3tech, one cell line 10:1 over the others, another per batch
#   kang_skew      kang_ifnb, one type 10:1 over the others, another per batch
#   tech2_domains  cellbench_2tech_fullgenes (15,073 genes): each technology cut into 3
#                  batches of 60 cells, proportions 4:1 differently per batch (6 batches, two
#                  far-apart domains)
#   sim_specific   cellweave-simulate: 6 batches x ~70 cells, 7 types, type 5 only in b0 and
#                  type 6 only in b1, batch effect 2
#   sim_skew       cellweave-simulate: 8 batches x ~50 cells, 5 types, 10:1 proportions
#                  differing per batch, two types missing from some batches, batch effect 1.5
#
# Output: one table (case, cells, batches, method, bio, batch, total; CLAIRE per seed and its
# mean; the best of Harmony and Scanorama), and per case CLAIRE's seed accuracy (labels used
# for the report only), seeds per batch pair, the refinement mixture and what the logs advised.
#
# usage: bench/robustness.sh            (after `cargo build --release --workspace`)
# env:   SEEDS (default "0 1 2"), CASES (default: all above), WORK (default: a temporary folder,
#        removed at the end; give one to keep the runs: the cases and the reference embeddings
#        are reused, and so are finished CLAIRE runs of the same TAG), PAIRS_ARGS / TRAIN_ARGS (extra flags for CLAIRE), TAG (name of the CLAIRE
#        runs in WORK, default "default"), CELLWEAVE_SHARED, CARGO_TARGET_DIR,
#        REF_PYTHON (default ~/.cache/cellweave-refenv/bin/python), NICE (default 10)
set -euo pipefail
. "$(dirname "$0")/common.sh"
REF_PYTHON=${REF_PYTHON:-${CELLWEAVE_REF_PYTHON:-$HOME/.cache/cellweave-refenv/bin/python}}
TOOLS=$SHARED/reference/tools
SEEDS=${SEEDS:-0 1 2}
ALL="c3_sub60 kang_sub60 kang_split c3_missing kang_missing c3_skew kang_skew tech2_domains sim_specific sim_skew"
CASES=${CASES:-$ALL}
TAG=${TAG:-default}
NICE=${NICE:-10}
read -r -a PAIRS_EXTRA <<< "${PAIRS_ARGS:-}"
read -r -a TRAIN_EXTRA <<< "${TRAIN_ARGS:-}"
need_bins simulate import export filter normalize hvg pairs train score
"$REF_PYTHON" -c "import scanpy, harmonypy, scanorama" 2>/dev/null ||
  { echo "bench/robustness.sh: the reference Python ($REF_PYTHON) lacks scanpy/harmonypy/scanorama" >&2; exit 1; }
if [ -z "${WORK:-}" ]; then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
run() { nice -n "$NICE" "$@"; }

# The cells of one case: counts.h5ad, ic/ (reference stack), obs.tsv, hvg.arrow.
prepare() {
  local c=$1 d=$WORK/$1
  [ -s "$d/hvg.arrow" ] && return 0
  mkdir -p "$d"
  local src="" kind=""
  case $c in
    c3_*) src=$SHARED/data/cellbench_3tech/cellbench_3tech.h5ad ;;
    kang_*) src=$SHARED/data/kang_ifnb/kang_ifnb.h5ad ;;
    tech2_domains) src=$SHARED/data/cellbench_2tech_fullgenes/cellbench_2tech_fullgenes.h5ad ;;
    sim_specific)
      run "$BIN/cellweave-simulate" -q -o "$d/sim.arrow" --cells 420 --genes 3000 --batches 6 \
        --cell-types 7 --batch-effect 2 --seed 11 \
        --absent 1:5,2:5,3:5,4:5,5:5,0:6,2:6,3:6,4:6,5:6 ;;
    sim_skew)
      run "$BIN/cellweave-simulate" -q -o "$d/sim.arrow" --cells 400 --genes 3000 --batches 8 \
        --cell-types 5 --batch-effect 1.5 --seed 12 --absent 2:4,5:4,7:3 \
        --type-weights "10,1,1,1,1/1,10,1,1,1/1,1,10,1,1/1,1,1,10,1/1,1,1,1,10/10,1,1,1,1/1,10,1,1,1/1,1,10,1,1" ;;
    *) echo "bench/robustness.sh: unknown case '$c' (known: $ALL)" >&2; exit 2 ;;
  esac
  if [ -z "$src" ]; then
    run "$BIN/cellweave-export" -q "$d/sim.arrow" -o "$d/sim.h5ad"
    src=$d/sim.h5ad kind=asis
  else
    kind=${c#*_}
  fi
  run "$REF_PYTHON" "$ROOT/bench/robustness_cases.py" "$kind" "$src" "$d" 0 > "$d/case.txt"
  run "$BIN/cellweave-import" -q "$d/counts.h5ad" -o "$d/raw.arrow"
  run "$BIN/cellweave-filter" -q "$d/raw.arrow" -o "$d/filtered.arrow"
  run "$BIN/cellweave-normalize" -q "$d/filtered.arrow" -o "$d/norm.arrow"
  run "$BIN/cellweave-hvg" -q "$d/norm.arrow" -o "$d/hvg.arrow"
}

# PCA, Harmony and Scanorama of the reference stack (seed = Harmony's and Scanorama's).
reference() {
  local d=$WORK/$1/ref.$2
  [ -s "$d/scanorama.tsv" ] && return 0
  (cd "$TOOLS" && run "$REF_PYTHON" embed.py --data "$WORK/$1/ic" --out "$d" --scanorama --seed "$2" \
    > "$WORK/$1/ref.$2.log" 2>&1) || { echo "embed.py failed on $1 (see $WORK/$1/ref.$2.log)" >&2; return 1; }
}

claire() {
  local d=$WORK/$1 s=$2 r=$WORK/$1/$TAG.$2
  mkdir -p "$r"
  run "$BIN/cellweave-pairs" "$d/hvg.arrow" -o "$r/pairs.arrow" --seed "$s" "${PAIRS_EXTRA[@]}" 2> "$r/pairs.log"
  run "$BIN/cellweave-train" "$d/hvg.arrow" --pairs "$r/pairs.arrow" -o "$r/model" \
    --embedding "$r/claire.arrow" --seed "$s" "${TRAIN_EXTRA[@]}" 2> "$r/train.log"
}

score() {
  local d=$WORK/$1 s=$2 r=$WORK/$1/$TAG.$2
  cp "$d/ref.$s/harmony.tsv" "$r/harmony.tsv"; cp "$d/ref.$s/scanorama.tsv" "$r/scanorama.tsv"
  run "$BIN/cellweave-score" -q "$d/hvg.arrow" "$r/claire.arrow" "$r/harmony.tsv" "$r/scanorama.tsv" \
    --obs "$d/obs.tsv" --unintegrated "$d/hvg.arrow" -o "$r/scores.tsv" 2> "$r/score.log"
}

for c in $CASES; do
  prepare "$c"
  for s in $SEEDS; do
    [ -s "$WORK/$c/$TAG.$s/scores.tsv" ] && continue   # a kept WORK: this run is done
    reference "$c" "$s"
    claire "$c" "$s"
    score "$c" "$s"
  done
  echo "$(date -u +%H:%M:%S) $c done: $(cat "$WORK/$c/case.txt")" >&2
done

echo "robustness benchmark: CLAIRE ($TAG; pairs ${PAIRS_ARGS:-defaults}, train ${TRAIN_ARGS:-defaults}), seeds $SEEDS"
echo "classic scIB total (0.6 bio + 0.4 batch) by cellweave-score; bio / batch in brackets"
printf "%-14s %-22s %-18s %-20s %-20s %-20s %-20s %s\n" case data "claire by seed" "claire mean" pca harmony scanorama "claire - best(harmony, scanorama)"
for c in $CASES; do
  files=()
  for s in $SEEDS; do files+=("$WORK/$c/$TAG.$s/scores.tsv"); done
  awk -F'\t' -v c="$c" -v info="$(awk '{print $2 " cells, " $6 " batches"}' "$WORK/$c/case.txt")" '
    FNR==1 {for (i=1;i<=NF;i++) col[$i]=i; next}
    {
      m=$1; sub(/.*\//, "", m); sub(/\.(tsv|arrow)$/, "", m); if (m ~ /hvg/) m="pca"
      b[m]+=$col["agg_scib_classic_bio"]; t[m]+=$col["agg_scib_classic_batch"]; tot[m]+=$col["agg_scib_classic_total"]; n[m]++
      if (m=="claire") per=per sprintf("%s%.3f", (per==""?"":" "), $col["agg_scib_classic_total"])
    }
    END {
      f = "%.3f (%.2f/%.2f)"
      best = tot["harmony"]/n["harmony"] > tot["scanorama"]/n["scanorama"] ? tot["harmony"]/n["harmony"] : tot["scanorama"]/n["scanorama"]
      cm = tot["claire"]/n["claire"]
      printf "%-14s %-22s %-18s %-20s %-20s %-20s %-20s %+.3f\n", c, info, per,
        sprintf(f, cm, b["claire"]/n["claire"], t["claire"]/n["claire"]),
        sprintf(f, tot["pca"]/n["pca"], b["pca"]/n["pca"], t["pca"]/n["pca"]),
        sprintf(f, tot["harmony"]/n["harmony"], b["harmony"]/n["harmony"], t["harmony"]/n["harmony"]),
        sprintf(f, tot["scanorama"]/n["scanorama"], b["scanorama"]/n["scanorama"], t["scanorama"]/n["scanorama"]),
        cm - best
    }' "${files[@]}"
done
echo
echo "CLAIRE diagnostics (first seed): seeds, seed accuracy, seeds per batch pair (min-max), refinement mixture, advice"
for c in $CASES; do
  s=${SEEDS%% *}; r=$WORK/$c/$TAG.$s
  acc=$(grep -o 'seed accuracy [0-9][0-9.]*' "$r/pairs.log" | tail -1 | awk '{print $3}')
  nseeds=$(grep -o '[0-9]* seed pairs,' "$r/pairs.log" | awk '{print $1}')
  per=$(grep -o '[0-9]* after the filter' "$r/pairs.log" | awk 'NR==1 {lo=$1; hi=$1} {if ($1<lo) lo=$1; if ($1>hi) hi=$1} END {print lo "-" hi}')
  mix=$(grep -o 'mixture low.*' "$r/train.log" | head -1 || true)
  after=$(grep -o 'seed accuracy [0-9.]* ([0-9/]*) -> [0-9.]*' "$r/train.log" | awk '{print $NF}' | head -1 || true)
  adv=$(grep -ho 'seeds look unreliable.*' "$r/pairs.log" "$r/train.log" | head -1 || true)
  echo "$c: seeds $nseeds, accuracy ${acc:-n/a} -> ${after:-n/a} after refinement, per pair $per; ${mix:-no mixture}${adv:+; $adv}"
done
