// cellweave-pairs: seed pairs (MNN) between batches and intra-batch KNN. One shard is one batch
// pair (shard.a, shard.b), the KNN lists (shard.id == 'knn'), or everything (shard.id == 'all').
process CELLWEAVE_PAIRS {
    tag "$meta.id"
    label 'process_medium'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(cells), val(shard)

    output:
    tuple val(meta), path("05_pairs_*.arrow"), emit: pairs
    tuple val(meta), path("05_pairs_*.benchmark.tsv"), emit: bench
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def mode = shard.id == 'knn' ? '--knn-only' : shard.id == 'all' ? '' : "--batch-a '${shard.a}' --batch-b '${shard.b}'"
    """
    timed 05_pairs_${shard.id}.benchmark.tsv cellweave-pairs \\
        ${cells} \\
        ${mode} \\
        ${args} \\
        --threads ${task.cpus} \\
        -o 05_pairs_${shard.id}.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-pairs --version 2>&1 | sed 's/^cellweave-pairs //')
    END_VERSIONS
    """

    stub:
    def mode = shard.id == 'knn' ? '--knn-only' : shard.id == 'all' ? '' : "--batch-a '${shard.a}' --batch-b '${shard.b}'"
    """
    touch 05_pairs_${shard.id}.arrow 05_pairs_${shard.id}.benchmark.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
