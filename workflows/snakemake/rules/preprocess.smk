# Raw counts in, log-normalized highly variable genes out:
# import (or simulate) -> filter -> normalize -> hvg.


rule import_data:
    message: "{wildcards.name}: import counts"
    input:
        counts=lambda w: inputs_of(w.name),
        obs=lambda w: obs_of(w.name),
    output:
        f"{OUT}/{{name}}/01_raw.arrow",
    log:
        f"{OUT}/{{name}}/logs/01_import.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/01_import.tsv"
    wildcard_constraints:
        name=names_where(lambda n: "input" in ds(n)),
    params:
        tool=tool("import"),
        args=lambda w: import_args(w.name),
    threads: 1
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input.counts:q} {params.args} -o {output:q} > {log:q} 2>&1"


rule simulate:
    message: "{wildcards.name}: simulate counts"
    output:
        f"{OUT}/{{name}}/01_raw.arrow",
    log:
        f"{OUT}/{{name}}/logs/01_simulate.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/01_simulate.tsv"
    wildcard_constraints:
        name=names_where(lambda n: "simulate" in ds(n)),
    params:
        tool=tool("simulate"),
        args=lambda w: " ".join(
            [
                flags(*((k.replace("_", "-"), v) for k, v in ds(w.name)["simulate"].items() if k != "extra")),
                ds(w.name)["simulate"]["extra"],
            ]
        ),
    threads: config["threads"]
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {params.args} --threads {threads} -o {output:q} > {log:q} 2>&1"


rule filter_cells:
    message: "{wildcards.name}: filter cells and genes"
    input:
        f"{OUT}/{{name}}/01_raw.arrow",
    output:
        cells=f"{OUT}/{{name}}/02_filtered.arrow",
        report=f"{OUT}/{{name}}/02_qc.tsv",
        genes=f"{OUT}/{{name}}/02_genes_qc.tsv",
    log:
        f"{OUT}/{{name}}/logs/02_filter.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/02_filter.tsv"
    params:
        tool=tool("filter"),
        args=" ".join(
            [
                flags(
                    ("min-cells", config["filter"]["min_cells"]),
                    ("min-genes", config["filter"]["min_genes"]),
                    ("max-genes", config["filter"]["max_genes"]),
                    ("min-counts", config["filter"]["min_counts"]),
                    ("max-counts", config["filter"]["max_counts"]),
                    ("max-mito-pct", config["filter"]["max_mito_pct"]),
                    ("mito-prefix", config["filter"]["mito_prefix"]),
                ),
                extra("filter"),
            ]
        ),
    threads: 1
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input:q} {params.args} --qc-report {output.report:q} --genes-out {output.genes:q}"
        " -o {output.cells:q} > {log:q} 2>&1"


rule normalize:
    message: "{wildcards.name}: normalize and log1p"
    input:
        f"{OUT}/{{name}}/02_filtered.arrow",
    output:
        f"{OUT}/{{name}}/03_normalized.arrow",
    log:
        f"{OUT}/{{name}}/logs/03_normalize.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/03_normalize.tsv"
    params:
        tool=tool("normalize"),
        args=" ".join(
            [
                flags(
                    ("target-sum", config["normalize"]["target_sum"]),
                    ("no-log", not config["normalize"]["log"]),
                ),
                extra("normalize"),
            ]
        ),
    threads: config["threads"]
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input:q} {params.args} --threads {threads} -o {output:q} > {log:q} 2>&1"


rule hvg:
    message: "{wildcards.name}: highly variable genes"
    input:
        f"{OUT}/{{name}}/03_normalized.arrow",
    output:
        cells=f"{OUT}/{{name}}/04_hvg.arrow",
        genes=f"{OUT}/{{name}}/04_hvg_genes.arrow",
    log:
        f"{OUT}/{{name}}/logs/04_hvg.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/04_hvg.tsv"
    params:
        tool=tool("hvg"),
        args=" ".join(
            [
                flags(
                    ("n-top-genes", config["hvg"]["n_top_genes"]),
                    ("flavor", config["hvg"]["flavor"]),
                ),
                extra("hvg"),
            ]
        ),
    threads: config["threads"]
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input:q} {params.args} --threads {threads}"
        " --genes-out {output.genes:q} -o {output.cells:q} > {log:q} 2>&1"
