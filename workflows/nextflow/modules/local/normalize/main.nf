// cellweave-normalize: total-count normalization and natural log1p.
process CELLWEAVE_NORMALIZE {
    tag "$meta.id"
    label 'process_low'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(cells)

    output:
    tuple val(meta), path("03_normalized.arrow"), emit: cells
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''

    """
    cellweave-normalize \\
        ${cells} \\
        ${args} \\
        --threads ${task.cpus} \\
        -o 03_normalized.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-normalize --version 2>&1 | sed 's/^cellweave-normalize //')
    END_VERSIONS
    """

    stub:
    """
    touch 03_normalized.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
