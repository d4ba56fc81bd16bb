# LATE imputation of dropout zeros, for the data sets whose config says `impute: true`.
# cellweave-impute takes raw counts: the filtered cells table (all kept genes).


rule impute:
    message: "{wildcards.name}: impute dropout zeros"
    input:
        f"{OUT}/{{name}}/02_filtered.arrow",
    output:
        cells=f"{OUT}/{{name}}/10_imputed.arrow",
        model=directory(f"{OUT}/{{name}}/10_impute_model"),
        history=f"{OUT}/{{name}}/10_impute_log.arrow",
    log:
        f"{OUT}/{{name}}/logs/10_impute.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/10_impute.tsv"
    wildcard_constraints:
        name=names_where(lambda n: ds(n)["impute"]),
    params:
        tool=tool("impute"),
        args=" ".join(
            x
            for x in [
                flags(
                    ("method", config["impute"]["method"]),
                    ("epochs", config["impute"]["epochs"]),
                    ("scale", config["impute"]["scale"]),
                    ("only-zeros", config["impute"]["only_zeros"]),
                    ("batch-aware", config["impute"]["batch_aware"]),
                    ("seed", config["impute"]["seed"]),
                    ("device", config["train"]["device"]),
                ),
                extra("impute"),
            ]
            if x
        ),
    threads: config["threads"]
    resources:
        mem_mb=mem("impute"),
        **gpu_resources(),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input:q} {params.args} --threads {threads} --model-out {output.model:q}"
        " --log {output.history:q} -o {output.cells:q} > {log:q} 2>&1"
