#!/usr/bin/env bash
# Quality of the models besides plain CLAIRE on the three labelled dev sets: the classic scIB
# total (0.6 bio + 0.4 batch, label cell_type, cellweave-score beside the unintegrated PCA) of
#   medl       MEDL's fixed-effects latent at its defaults (lr 1e-4, batch 512, 500 epochs bounded to 1,500-6,000 steps)
#   claire     CLAIRE at its defaults (one cellweave-train call: stage 1, refine, stage 2)
#   bss        CLAIRE --augment bss
#   bss-rank   CLAIRE --augment bss-rank
#   invae      inVAE, batch as the only (spurious) covariate
# per data set and seed. Preprocessing as the Snakemake workflow does it (import -> filter ->
# normalize -> hvg -> pairs; its targets only, no training).
#
# usage: bench/models_quality.sh      (after `cargo build --release --workspace`)
# env:   RUNS ("dataset:run ..." in order, default every run on every set), SEEDS (default "0"),
#        WORK (kept when given), CELLWEAVE_SHARED, CARGO_TARGET_DIR or BIN (the binaries)
# Writes $WORK/quality.tsv: dataset, run, seed, bio, batch, total (one line per run, appended
# as each finishes) and each run's embedding, model and log under $WORK.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
SHARED=${CELLWEAVE_SHARED:-$ROOT/../shared}
SEEDS=${SEEDS:-0}
SETS="cellbench_3tech kang_ifnb cellbench_2tech_fullgenes"
if [ -z "${RUNS:-}" ]; then
    RUNS=$(for d in $SETS; do for r in medl claire bss bss-rank invae; do echo -n "$d:$r "; done; done)
fi
if [ -z "${WORK:-}" ]; then WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK"
export PATH="$BIN:$PATH" CELLWEAVE_SHARED="$SHARED"

. "$ROOT/bench/dev_config.sh"
dev_config "$WORK" "$SHARED"
targets=()
for d in $SETS; do
    targets+=("$WORK/results/$d/04_hvg.arrow" "$WORK/results/$d/02_filtered.arrow" "$WORK/results/$d/05_pairs.arrow")
done
"${SNAKEMAKE:-$ROOT/.venv/bin/snakemake}" -s "$ROOT/workflows/snakemake/Snakefile" --configfile "$WORK/config.yaml" \
    --cores 2 "${targets[@]}" > "$WORK/snakemake.log" 2>&1

[ -f "$WORK/quality.tsv" ] || echo -e "dataset\trun\tseed\tbio\tbatch\ttotal\tcpu_s" > "$WORK/quality.tsv"
for seed in $SEEDS; do
    for dr in $RUNS; do
        d=${dr%%:*} run=${dr#*:}
        R=$WORK/results/$d
        out=$WORK/$d.$run.$seed
        case $run in
            medl) args=(--model medl) ;;
            claire) args=(--pairs "$R/05_pairs.arrow") ;;
            bss | bss-rank) args=(--pairs "$R/05_pairs.arrow" --augment "$run") ;;
            invae) args=(--model invae --counts "$R/02_filtered.arrow" --spur-covariates batch) ;;
            *) echo "unknown run '$run' (medl, claire, bss, bss-rank, invae)" >&2; exit 1 ;;
        esac
        /usr/bin/time -f "%U %S" -o "$out.time" cellweave-train "$R/04_hvg.arrow" "${args[@]}" --seed "$seed" \
            --threads 2 --embedding "$out.arrow" --log "$out.log.tsv" -o "$out.model" 2> "$out.err"
        cellweave-score "$R/04_hvg.arrow" "$out.arrow" --unintegrated "$R/04_hvg.arrow" --label-key cell_type \
            -o "$out.scores.tsv" 2> "$out.score.err"
        cpu=$(awk '{printf "%.0f", $1 + $2}' "$out.time")
        awk -F'\t' -v d="$d" -v r="$run" -v s="$seed" -v cpu="$cpu" '
            NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
            { n = (NR == 2) ? "pca" : r
              printf "%s\t%s\t%s\t%.3f\t%.3f\t%.3f\t%s\n", d, n, s, $c["agg_scib_classic_bio"],
                  $c["agg_scib_classic_batch"], $c["agg_scib_classic_total"], (NR == 2) ? "" : cpu }' \
            "$out.scores.tsv" >> "$WORK/quality.tsv"
    done
done
column -t -s $'\t' "$WORK/quality.tsv"
