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
# 2. Speed (MODE=speed): seconds per epoch on one thread on kang_ifnb's counts, cellweave and
#    the reference package (PyPI inVAE 0.1.0 on the Debian CPU torch of the shared
#    setup_torch.sh, through $TORCHPY; bench/invae_torch.py) alternating, ROUNDS rounds.
#
# usage: bench/invae.sh              (after `cargo build --release --workspace`)
# env:   CELLWEAVE_SHARED, CARGO_TARGET_DIR, CELLWEAVE_REF_PYTHON, SEEDS, MODE, WORK (kept when given)
set -euo pipefail
. "$(dirname "$0")/common.sh"
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
if [ "$MODE" = speed ]; then
    targets=("$WORK/results/kang_ifnb/04_hvg.arrow" "$WORK/results/kang_ifnb/02_filtered.arrow")
else
    for d in kang_ifnb cellbench_3tech cellbench_2tech_fullgenes; do
        targets+=("$WORK/results/$d/04_hvg.arrow" "$WORK/results/$d/02_filtered.arrow" "$WORK/results/$d/08_claire_embedding.arrow")
    done
fi
"$SNAKEMAKE" -s "$ROOT/workflows/snakemake/Snakefile" --configfile "$WORK/config.yaml" --cores 2 "${targets[@]}" >&2

if [ "$MODE" = speed ]; then
    # Side by side, alternating, ROUNDS rounds (default 3), one thread each, the same data
    # (kang_ifnb's counts of the HVGs, --inv-covariates condition, batch 256) and the same
    # network (the reference FinVAE with n_layers=2 = cellweave's --encoder-layers 1, and its
    # defaults inject_covar_in_latent=False, fix_mean_prior=True = cellweave's
    # --inject-covariates off --prior-mean fixed).
    R=$WORK/results/kang_ifnb
    TORCHPY=${TORCHPY:-$SHARED/reference/tools/torchpy}
    cellweave-export "$R/02_filtered.arrow" --hvg "$R/04_hvg_genes.arrow" --n-neighbors 0 --n-pcs 0 \
        -o "$WORK/kang_counts.h5ad" 2> /dev/null
    have_ref=0
    "$TORCHPY" -c 'import inVAE' 2> /dev/null && have_ref=1
    [ $have_ref = 1 ] || echo "reference inVAE 0.1.0 not importable through $TORCHPY: run \$SHARED/reference/tools/setup_torch.sh, then its venv's pip install --no-deps inVAE==0.1.0 anndata==0.8.0 and pip install 'scanpy==1.9.8' 'anndata==0.8.0' 'numpy<2' 'pandas<2.3' six tensorboard; timing cellweave only" >&2
    : > "$WORK/speed.tsv"
    for round in $(seq "${ROUNDS:-3}"); do
        RAYON_NUM_THREADS=1 cellweave-train "$R/04_hvg.arrow" --model invae --counts "$R/02_filtered.arrow" \
            --inv-covariates condition --inject-covariates off --prior-mean fixed \
            --encoder-layers 1 --epochs 5 --threads 1 --embedding "$WORK/speed.arrow" \
            --log "$WORK/speed_log.tsv" -o "$WORK/speed_model" 2> "$WORK/speed.err"
        awk -F'\t' -v r="$round" 'NR>2 {s+=$NF; n++} END {printf "cellweave\t%s\t%.4f\n", r, s/n}' "$WORK/speed_log.tsv" >> "$WORK/speed.tsv"
        rm -rf "$WORK/speed_model"
        if [ $have_ref = 1 ]; then
            "$TORCHPY" "$ROOT/bench/invae_torch.py" "$WORK/kang_counts.h5ad" 4 condition batch 2> "$WORK/speed_ref.err" \
                | awk -v r="$round" '/^reference_seconds_per_epoch/ {printf "reference\t%s\t%s\n", r, $2}' >> "$WORK/speed.tsv"
        fi
    done
    echo "inVAE seconds per epoch, 1 thread, kang_ifnb (1,556 cells, HVG counts, batch 256), $(nproc) cores; rounds alternate"
    python3 - "$WORK/speed.tsv" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for side, _, s in rows:
    by.setdefault(side, []).append(float(s))
for side, v in by.items():
    print(f"{side:10s} median {statistics.median(v):.3f}  mean {statistics.mean(v):.3f}  rounds {' '.join(f'{x:.3f}' for x in v)}")
if len(by) == 2:
    print(f"ratio reference / cellweave (median): {statistics.median(by['reference']) / statistics.median(by['cellweave']):.2f}x")
PY
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
