// cellweave-train: CLAIRE contrastive training, one stage per call (stage 2 continues from
// `init`, the stage-1 model; pass [] for none). Outputs are named after task.ext.prefix.
process CELLWEAVE_TRAIN {
    tag "$meta.id"
    label 'process_high'
    label 'process_gpu'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(cells), path(pairs), path(init, stageAs: 'init/*')

    output:
    tuple val(meta), path("${prefix}_model")         , emit: model
    tuple val(meta), path("${prefix}_embedding.arrow"), emit: embedding
    tuple val(meta), path("${prefix}_log.arrow")      , emit: history
    tuple val(meta), path("${prefix}.benchmark.tsv")   , emit: bench
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: 'train'
    def init_arg = init ? "--init ${init}" : ''
    """
    timed ${prefix}.benchmark.tsv cellweave-train \\
        ${cells} \\
        --pairs ${pairs} \\
        ${init_arg} \\
        --no-refine \\
        ${args} \\
        --threads ${task.cpus} \\
        --embedding ${prefix}_embedding.arrow \\
        --log ${prefix}_log.arrow \\
        -o ${prefix}_model

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-train --version 2>&1 | sed 's/^cellweave-train //')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: 'train'
    def init_arg = init ? "--init ${init}" : ''
    """
    mkdir ${prefix}_model
    touch ${prefix}_embedding.arrow ${prefix}_log.arrow ${prefix}.benchmark.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
