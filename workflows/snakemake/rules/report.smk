# What users look at: the UMAP picture, the integrated .h5ad and the scIB scores.


rule plot:
    message: "{wildcards.name}: UMAP of the integrated embedding"
    input:
        f"{OUT}/{{name}}/08_claire_embedding.arrow",
    output:
        png=f"{OUT}/{{name}}/umap.png",
        umap=f"{OUT}/{{name}}/09_umap.arrow",
    log:
        f"{OUT}/{{name}}/logs/09_plot.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/09_plot.tsv"
    params:
        tool=tool("plot"),
        colors=lambda w: colors(w.name),
        args=" ".join(x for x in [flag("seed", config["plot"]["seed"]), extra("plot")] if x),
    # the UMAP layout runs on one thread (only its neighbour search and spectral start use
    # more): one thread, so that export or a scoring job runs beside it
    threads: min(config["threads"], config["plot"]["threads"])
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input:q} {params.colors} {params.args} --threads {threads}"
        " --umap-out {output.umap:q} -o {output.png:q} > {log:q} 2>&1"


rule export:
    message: "{wildcards.name}: export integrated.h5ad"
    input:
        cells=f"{OUT}/{{name}}/03_normalized.arrow",
        counts=f"{OUT}/{{name}}/02_filtered.arrow",
        hvg=f"{OUT}/{{name}}/04_hvg_genes.arrow",
        claire=f"{OUT}/{{name}}/08_claire_embedding.arrow",
        umap=f"{OUT}/{{name}}/09_umap.arrow",
        others=lambda w: [embedding_of(w.name, m) for m in models_of(w.name) if m != "claire"],
    output:
        f"{OUT}/{{name}}/integrated.h5ad",
    log:
        f"{OUT}/{{name}}/logs/10_export.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/10_export.tsv"
    params:
        tool=tool("export"),
        others=lambda w, input: " ".join(f"--embedding {shlex.quote(p)}" for p in input.others),
    threads: 1
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input.cells:q} --counts {input.counts:q} --hvg {input.hvg:q}"
        " --embedding {input.claire:q} --embedding {input.umap:q} {params.others}"
        " --threads {threads} -o {output:q} > {log:q} 2>&1"


rule score:
    message: "{wildcards.name}: scIB metrics"
    input:
        embedding=f"{OUT}/{{name}}/08_claire_embedding.arrow",
        unintegrated=f"{OUT}/{{name}}/04_hvg.arrow",
    output:
        f"{OUT}/{{name}}/scores.tsv",
    log:
        f"{OUT}/{{name}}/logs/11_score.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/11_score.tsv"
    wildcard_constraints:
        name=names_where(lambda n: bool(label_key(n))),
    params:
        tool=tool("score"),
        label=lambda w: shlex.quote(label_key(w.name)),
        args=extra("score"),
    threads: min(config["threads"], config["score"]["threads"])
    resources:
        mem_mb=mem("score"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input.embedding:q} --unintegrated {input.unintegrated:q}"
        " --label-key {params.label} {params.args} --threads {threads}"
        " -o {output:q} > {log:q} 2>&1"
