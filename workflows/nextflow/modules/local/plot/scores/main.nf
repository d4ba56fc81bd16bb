// cellweave-plot --scores: the scib-style summary figure of benchmark.tsv (one row per model,
// highest classic scIB total first).
process CELLWEAVE_PLOT_SCORES {
    tag "$meta.id"
    label 'process_single'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(table)

    output:
    tuple val(meta), path("benchmark.png"), emit: png
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    cellweave-plot \\
        ${table} \\
        --scores \\
        --title '${meta.id}' \\
        ${args} \\
        -o benchmark.png

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-plot --version 2>&1 | sed 's/^cellweave-plot //')
    END_VERSIONS
    """

    stub:
    """
    touch benchmark.png

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
