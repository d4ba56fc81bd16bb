# LATE imputation of dropout zeros, for the data sets whose config says `impute: true`.


rule impute:
    message: "{wildcards.name}: impute dropout zeros"
    input:
        f"{OUT}/{{name}}/04_hvg.arrow",
    output:
        cells=f"{OUT}/{{name}}/10_imputed.arrow",
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
                    ("only-zeros", config["impute"]["only_zeros"]),
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
    shell:
        "{params.tool} {input:q} {params.args} --threads {threads} -o {output.cells:q} > {log:q} 2>&1"
