// cellweave-pairs --definition deepmnn: deepMNN's pairs (scaled joint PCA, k = 20 MNN over all
// batch pairs) for the models whose models.inputs entry lists deepmnn_pairs.
process CELLWEAVE_PAIRS_DEEPMNN {
    tag "$meta.id"
    label 'process_medium'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(cells)

    output:
    tuple val(meta), path("05_pairs_deepmnn.arrow"), emit: pairs
    tuple val(meta), path("05_pairs_deepmnn.benchmark.tsv"), emit: bench
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    timed 05_pairs_deepmnn.benchmark.tsv cellweave-pairs \\
        ${cells} \\
        --definition deepmnn \\
        ${args} \\
        --threads ${task.cpus} \\
        -o 05_pairs_deepmnn.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-pairs --version 2>&1 | sed 's/^cellweave-pairs //')
    END_VERSIONS
    """

    stub:
    """
    touch 05_pairs_deepmnn.arrow 05_pairs_deepmnn.benchmark.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
