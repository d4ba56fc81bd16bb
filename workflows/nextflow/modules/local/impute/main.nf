// cellweave-impute: LATE imputation of dropout zeros (input: raw counts, the filtered cells table).
process CELLWEAVE_IMPUTE {
    tag "$meta.id"
    label 'process_high'
    label 'process_gpu'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(cells)

    output:
    tuple val(meta), path("10_imputed.arrow")    , emit: cells
    tuple val(meta), path("10_impute_model")     , emit: model
    tuple val(meta), path("10_impute_log.arrow") , emit: history
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''

    """
    cellweave-impute \\
        ${cells} \\
        ${args} \\
        --threads ${task.cpus} \\
        --model-out 10_impute_model \\
        --log 10_impute_log.arrow \\
        -o 10_imputed.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-impute --version 2>&1 | sed 's/^cellweave-impute //')
    END_VERSIONS
    """

    stub:
    """
    mkdir 10_impute_model
    touch 10_imputed.arrow 10_impute_log.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
