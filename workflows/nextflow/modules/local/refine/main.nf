// cellweave-refine: keep the seed pairs the stage-1 embedding confirms (2-component Gaussian mixture).
process CELLWEAVE_REFINE {
    tag "$meta.id"
    label 'process_single'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(cells), path(pairs), path(embedding)

    output:
    tuple val(meta), path("07_refined_pairs.arrow"), emit: pairs
    tuple val(meta), path("07_refine.benchmark.tsv")     , emit: bench
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''

    """
    timed 07_refine.benchmark.tsv cellweave-refine \\
        ${cells} \\
        --pairs ${pairs} \\
        --embedding ${embedding} \\
        ${args} \\
        -o 07_refined_pairs.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-refine --version 2>&1 | sed 's/^cellweave-refine //')
    END_VERSIONS
    """

    stub:
    """
    touch 07_refined_pairs.arrow 07_refine.benchmark.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
