// The benchmark of every model of a data set (one with a label key): cellweave-score of the
// unintegrated PCA baseline and every model's embedding, then benchmark_table.py (shared with
// the Snakemake workflow) names the rows by model and adds each model's wall time and peak
// memory from its jobs' benchmark files. `models` is [[name, [benchmark file names]], ...] in
// the order of `embeddings`.
process CELLWEAVE_BENCHMARK {
    tag "$meta.id"
    label 'process_medium'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), val(models), path(embeddings, stageAs: 'embeddings/*'), path(benches, stageAs: 'benchmarks/*'), path(unintegrated)
    path(table_script)

    output:
    tuple val(meta), path("13_benchmark_scores.tsv"), emit: scores
    tuple val(meta), path("benchmark.tsv")          , emit: table
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def runs = models.collect { m, files -> (['--model', m] + files.collect { "benchmarks/${it}" }).join(' ') }.join(' ')
    """
    cellweave-score \\
        ${unintegrated} \\
        ${embeddings} \\
        --unintegrated ${unintegrated} \\
        --label-key '${meta.label_key}' \\
        ${args} \\
        --threads ${task.cpus} \\
        -o 13_benchmark_scores.tsv

    python3 ${table_script} 13_benchmark_scores.tsv benchmark.tsv --baseline pca ${runs}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-score --version 2>&1 | sed 's/^cellweave-score //')
    END_VERSIONS
    """

    stub:
    """
    touch 13_benchmark_scores.tsv benchmark.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
