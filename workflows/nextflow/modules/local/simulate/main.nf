// cellweave-simulate: a multi-batch negative-binomial data set with known cell types.
process CELLWEAVE_SIMULATE {
    tag "$meta.id"
    label 'process_low'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    val(meta)

    output:
    tuple val(meta), path("01_raw.arrow"), emit: cells
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''

    """
    cellweave-simulate \\
        ${args} \\
        --threads ${task.cpus} \\
        -o 01_raw.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-simulate --version 2>&1 | sed 's/^cellweave-simulate //')
    END_VERSIONS
    """

    stub:
    """
    touch 01_raw.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
