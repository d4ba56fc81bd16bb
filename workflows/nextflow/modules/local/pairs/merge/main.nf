// cellweave-pairs --merge: join the pair shards of one data set into one pairs table.
process CELLWEAVE_PAIRS_MERGE {
    tag "$meta.id"
    label 'process_single'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(shards, stageAs: 'shards/*')

    output:
    tuple val(meta), path("05_pairs.arrow"), emit: pairs
    tuple val(meta), path("05_pairs_merge.benchmark.tsv"), emit: bench
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''

    """
    timed 05_pairs_merge.benchmark.tsv cellweave-pairs \\
        --merge ${shards} \\
        ${args} \\
        -o 05_pairs.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-pairs --version 2>&1 | sed 's/^cellweave-pairs //')
    END_VERSIONS
    """

    stub:
    """
    touch 05_pairs.arrow 05_pairs_merge.benchmark.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
