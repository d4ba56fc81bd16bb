// cellweave-export: integrated.h5ad as scanpy's tutorial ends with it (every kept gene
// log-normalized in X, raw counts in layers['counts'], HVG statistics in var, obsm['X_claire'],
// obsm['X_umap'], every other model's embedding (`others`, [] for none) as obsm['X_<model>'],
// the kNN graph of X_claire in obsp, per-cell QC and obs carried through).
process CELLWEAVE_EXPORT {
    tag "$meta.id"
    label 'process_single'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(cells), path(counts), path(hvg_genes), path(claire), path(umap), path(others, stageAs: 'models/*')

    output:
    tuple val(meta), path("integrated.h5ad"), emit: h5ad
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def more = (others ? (others instanceof List ? others : [others]) : []).collect { "--embedding ${it}" }.join(' ')

    """
    cellweave-export \\
        ${cells} \\
        --counts ${counts} \\
        --hvg ${hvg_genes} \\
        --embedding ${claire} \\
        --embedding ${umap} \\
        ${more} \\
        ${args} \\
        -o integrated.h5ad

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-export --version 2>&1 | sed 's/^cellweave-export //')
    END_VERSIONS
    """

    stub:
    """
    touch integrated.h5ad

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
