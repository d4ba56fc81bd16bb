// cellweave-filter: cell QC and gene filter, with a per-batch QC report.
process CELLWEAVE_FILTER {
    tag "$meta.id"
    label 'process_single'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(cells)

    output:
    tuple val(meta), path("02_filtered.arrow"), emit: cells
    tuple val(meta), path("02_qc.tsv")        , emit: qc
    tuple val(meta), path("02_genes_qc.tsv")  , emit: genes
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''

    """
    cellweave-filter \\
        ${cells} \\
        ${args} \\
        --qc-report 02_qc.tsv \\
        --genes-out 02_genes_qc.tsv \\
        -o 02_filtered.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-filter --version 2>&1 | sed 's/^cellweave-filter //')
    END_VERSIONS
    """

    stub:
    """
    touch 02_filtered.arrow 02_qc.tsv 02_genes_qc.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
