#!/usr/bin/env bash
# Benchmark of inVAE (cellweave-train --model invae).
#
# 1. Quality (MODE=quality, the default): on kang_ifnb (--inv-covariates condition
#    --spur-covariates batch), cellbench_3tech and cellbench_2tech_fullgenes (batch only), the
#    preprocessed tables of the Snakemake workflow (import -> filter -> normalize -> hvg, CLAIRE as
#    the workflow trains it) are scored with cellweave-score: the classic scIB total (0.6 bio +
#    0.4 batch, label cell_type) of inVAE per seed (SEEDS, default "0 1 2"), of PCA (the
#    unintegrated baseline) and of CLAIRE; and on kang_ifnb, how well a classifier (logistic
#    regression, 5-fold cross-validation, scikit-learn of the reference Python) predicts ctrl vs
#    stim from inVAE's z_inv and from CLAIRE's embedding.
# 2. Speed (MODE=speed): seconds per epoch on one thread (RAYON_NUM_THREADS=1) on kang_ifnb's
#    counts; the reference package (PyPI inVAE 0.1.0) is timed on the same data when
#    $INVAE_PYTHON can import inVAE (not installable here: it needs torch; see docs/models.md).
#
# usage: bench/invae.sh              (after `cargo build --release --workspace`)
# env:   CELLWEAVE_SHARED, CARGO_TARGET_DIR, CELLWEAVE_REF_PYTHON, SEEDS, MODE, WORK (kept when given)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
SHARED=${CELLWEAVE_SHARED:-$ROOT/../shared}
PY=${CELLWEAVE_REF_PYTHON:-$HOME/.cache/cellweave-refenv/bin/python}
SEEDS=${SEEDS:-"0 1 2"}
MODE=${MODE:-quality}
if [ -z "${WORK:-}" ]; then WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK"
export PATH="$BIN:$PATH" CELLWEAVE_SHARED="$SHARED"

. "$ROOT/bench/dev_config.sh"
dev_config "$WORK" "$SHARED"
SNAKEMAKE=${SNAKEMAKE:-$ROOT/.venv/bin/snakemake}
targets=()
for d in kang_ifnb cellbench_3tech cellbench_2tech_fullgenes; do
    targets+=("$WORK/results/$d/04_hvg.arrow" "$WORK/results/$d/02_filtered.arrow" "$WORK/results/$d/08_claire_embedding.arrow")
done
"$SNAKEMAKE" -s "$ROOT/workflows/snakemake/Snakefile" --configfile "$WORK/config.yaml" --cores 2 "${targets[@]}" >&2

if [ "$MODE" = speed ]; then
    R=$WORK/results/kang_ifnb
    RAYON_NUM_THREADS=1 cellweave-train "$R/04_hvg.arrow" --model invae --counts "$R/02_filtered.arrow" \
        --inv-covariates condition --epochs 5 --embedding "$WORK/speed.arrow" --log "$WORK/speed_log.tsv" \
        -o "$WORK/speed_model" 2> "$WORK/speed.err"
    echo "cellweave inVAE, 1 thread, kang_ifnb: seconds per epoch (epochs 2-5):"
    awk -F'\t' 'NR>2 {s+=$NF; n++} END {printf "%.3f\n", s/n}' "$WORK/speed_log.tsv"
    if [ -n "${INVAE_PYTHON:-}" ] && "$INVAE_PYTHON" -c 'import inVAE' 2>/dev/null; then
        echo "reference: run inVAE.FinVAE on the same h5ad with torch.set_num_threads(1) (not scripted: not installable here)"
    else
        echo "reference inVAE 0.1.0: not installed (needs torch + anndata==0.8.0); no comparison"
    fi
    exit 0
fi

echo -e "dataset\tembedding\tbio\tbatch\ttotal (classic scIB)"
for d in kang_ifnb cellbench_3tech cellbench_2tech_fullgenes; do
    R=$WORK/results/$d
    inv=()
    [ "$d" = kang_ifnb ] && inv=(--inv-covariates condition)
    for seed in $SEEDS; do
        cellweave-train "$R/04_hvg.arrow" --model invae --counts "$R/02_filtered.arrow" "${inv[@]}" \
            --spur-covariates batch --seed "$seed" --embedding "$WORK/$d.invae.$seed.arrow" \
            -o "$WORK/$d.invae.$seed.model" 2> "$WORK/$d.invae.$seed.log"
    done
    embs=()
    for seed in $SEEDS; do embs+=("$WORK/$d.invae.$seed.arrow"); done
    cellweave-score "$R/04_hvg.arrow" "$R/08_claire_embedding.arrow" "${embs[@]}" --unintegrated "$R/04_hvg.arrow" \
        --label-key cell_type -o "$WORK/$d.scores.tsv" 2> "$WORK/$d.score.log"
    # classic scIB total per embedding (rows: pca, claire, invae seed by seed)
    awk -F'\t' -v d="$d" 'NR==1 {for (i=1;i<=NF;i++) c[$i]=i; next}
        {print d "\t" $1 "\t" $c["agg_scib_classic_bio"] "\t" $c["agg_scib_classic_batch"] "\t" $c["agg_scib_classic_total"]}' "$WORK/$d.scores.tsv"
    if [ "$d" = kang_ifnb ]; then
        # ctrl vs stim from z_inv and from CLAIRE's embedding
        for seed in $SEEDS; do
            cellweave-export "$WORK/$d.invae.$seed.arrow" --embedding "$R/08_claire_embedding.arrow" \
                --n-neighbors 0 -o "$WORK/$d.$seed.h5ad" 2>/dev/null
            echo "condition accuracy, seed $seed:"; "$PY" "$ROOT/bench/invae_condition.py" "$WORK/$d.$seed.h5ad" condition
        done
    fi
done
