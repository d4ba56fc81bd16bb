// cellweave-score: scIB metrics of the integrated embedding (data sets with a label key).
process CELLWEAVE_SCORE {
    tag "$meta.id"
    label 'process_medium'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(embedding), path(unintegrated)

    output:
    tuple val(meta), path("scores.tsv"), emit: scores
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''

    """
    cellweave-score \\
        ${embedding} \\
        --unintegrated ${unintegrated} \\
        --label-key '${meta.label_key}' \\
        ${args} \\
        --threads ${task.cpus} \\
        -o scores.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-score --version 2>&1 | sed 's/^cellweave-score //')
    END_VERSIONS
    """

    stub:
    """
    touch scores.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
