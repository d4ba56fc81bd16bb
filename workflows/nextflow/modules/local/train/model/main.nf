// cellweave-train --model MODEL: one of the models besides CLAIRE (scetm, medl, invae, ...), one
// call on the HVG cells table plus the inputs that config models.inputs lists for the model
// (`counts`: the filtered counts, `pairs`: the seed pairs; [] for an input it does not take).
// Outputs are named as the Snakemake workflow names them: 12_{model}_*.
process CELLWEAVE_TRAIN_MODEL {
    tag "$meta.id:$model"
    label 'process_high'
    label 'process_gpu'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), val(model), path(cells), path(counts, stageAs: 'counts/*'), path(pairs, stageAs: 'pairs/*')

    output:
    tuple val(meta), val(model), path("12_${model}_embedding.arrow"), path("12_train_${model}.benchmark.tsv"), emit: run
    tuple val(meta), val(model), path("12_${model}_model")            , emit: model
    tuple val(meta), val(model), path("12_${model}_log.arrow")        , emit: history
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def inputs = (counts ? "--counts ${counts} " : '') + (pairs ? "--pairs ${pairs}" : '')
    """
    timed 12_train_${model}.benchmark.tsv cellweave-train \\
        ${cells} \\
        --model ${model} \\
        ${inputs} \\
        ${args} \\
        --threads ${task.cpus} \\
        --embedding 12_${model}_embedding.arrow \\
        --log 12_${model}_log.arrow \\
        -o 12_${model}_model

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-train --version 2>&1 | sed 's/^cellweave-train //')
    END_VERSIONS
    """

    stub:
    """
    mkdir 12_${model}_model
    touch 12_${model}_embedding.arrow 12_${model}_log.arrow 12_train_${model}.benchmark.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
