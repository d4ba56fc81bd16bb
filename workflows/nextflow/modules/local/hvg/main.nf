// cellweave-hvg: highly variable genes selected per batch; the cells table subset to them.
process CELLWEAVE_HVG {
    tag "$meta.id"
    label 'process_low'

    conda "${projectDir}/../snakemake/envs/cellweave.yaml"
    container "cellweave/cellweave:0.1.0"

    input:
    tuple val(meta), path(cells)

    output:
    tuple val(meta), path("04_hvg.arrow")      , emit: cells
    tuple val(meta), path("04_hvg_genes.arrow"), emit: genes
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''

    """
    cellweave-hvg \\
        ${cells} \\
        ${args} \\
        --threads ${task.cpus} \\
        --genes-out 04_hvg_genes.arrow \\
        -o 04_hvg.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: \$(cellweave-hvg --version 2>&1 | sed 's/^cellweave-hvg //')
    END_VERSIONS
    """

    stub:
    """
    touch 04_hvg.arrow 04_hvg_genes.arrow

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        cellweave: 0.1.0
    END_VERSIONS
    """
}
