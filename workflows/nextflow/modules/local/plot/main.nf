// cellweave-plot: UMAP of the integrated embedding, coloured by batch (and label), plus the 2-D coordinates.
process CELLWEAVE_PLOT {
    tag "$meta.id"
    label 'process_low'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(embedding)

    output:
    tuple val(meta), path("umap.png")     , emit: png
    tuple val(meta), path("09_umap.arrow"), emit: umap
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''

    """
    cellweave-plot \\
        ${embedding} \\
        ${args} \\
        --threads ${task.cpus} \\
        --umap-out 09_umap.arrow \\
        -o umap.png

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-plot --version 2>&1 | sed 's/^cellweave-plot //')
    END_VERSIONS
    """

    stub:
    """
    touch umap.png 09_umap.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
