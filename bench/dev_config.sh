# Sourced by the bench scripts: `dev_config WORK SHARED` writes WORK/config.yaml, the Snakemake
# config of the three labelled dev sets (outputs under WORK/results; binaries from PATH).
dev_config() {
    cat > "$1/config.yaml" <<YAML
outdir: $1/results
threads: 2
datasets:
  kang_ifnb:
    input: $2/data/kang_ifnb/kang_ifnb.h5ad
    counts_layer: counts
    batch_key: batch
    label_key: cell_type
    batches: [ctrl101, ctrl107, stim101, stim107]
  cellbench_3tech:
    input: $2/data/cellbench_3tech
    obs: $2/data/cellbench_3tech/obs.tsv
    batch_key: batch
    label_key: cell_type
  cellbench_2tech_fullgenes:
    input: $2/data/cellbench_2tech_fullgenes
    obs: $2/data/cellbench_2tech_fullgenes/obs.tsv
    batch_key: batch
    label_key: cell_type
YAML
}
