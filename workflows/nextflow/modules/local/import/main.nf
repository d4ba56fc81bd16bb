// cellweave-import: raw counts (h5ad, 10x HDF5 or MTX folder, CSV/TSV; one or several) -> cells table.
process CELLWEAVE_IMPORT {
    tag "$meta.id"
    label 'process_single'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(counts, stageAs: 'input??/*'), path(obs)

    output:
    tuple val(meta), path("01_raw.arrow"), emit: cells
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def obs_arg = obs ? "--obs ${obs}" : ''
    """
    cellweave-import \\
        ${counts} \\
        ${obs_arg} \\
        ${args} \\
        -o 01_raw.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-import --version 2>&1 | sed 's/^cellweave-import //')
    END_VERSIONS
    """

    stub:
    def obs_arg = obs ? "--obs ${obs}" : ''
    """
    touch 01_raw.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
