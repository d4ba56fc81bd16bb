// cellweave-plot with several embeddings: the UMAP panels of every model of a data set, one
// row per model (in the data set's `models` order), coloured by batch (and label).
process CELLWEAVE_PLOT_MODELS {
    tag "$meta.id"
    label 'process_low'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(embeddings, stageAs: 'embeddings/*')

    output:
    tuple val(meta), path("umap_models.png"), emit: png
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    cellweave-plot \\
        ${embeddings} \\
        ${args} \\
        --threads ${task.cpus} \\
        -o umap_models.png

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-plot --version 2>&1 | sed 's/^cellweave-plot //')
    END_VERSIONS
    """

    stub:
    """
    touch umap_models.png

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
