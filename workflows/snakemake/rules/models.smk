# The models besides CLAIRE (one cellweave-train call each, inputs from the models.inputs
# table), the benchmark of every model of a data set (benchmark.tsv and benchmark.png) and the
# UMAP of every model, one row each (umap_models.png, for a data set with several models).


rule pairs_deepmnn:
    message: "{wildcards.name}: deepMNN's pairs"
    input:
        f"{OUT}/{{name}}/04_hvg.arrow",
    output:
        f"{OUT}/{{name}}/05_pairs_deepmnn.arrow",
    log:
        f"{OUT}/{{name}}/logs/05_pairs_deepmnn.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/05_pairs_deepmnn.tsv"
    params:
        tool=tool("pairs"),
        seed=lambda w: config["train"]["seed"],
    threads: config["threads"]
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input:q} --definition deepmnn --seed {params.seed} --threads {threads}"
        " -o {output:q} > {log:q} 2>&1"


rule train_model:
    message: "{wildcards.name}: train {wildcards.model}"
    input:
        unpack(lambda w: model_inputs(w.name, w.model)),
    output:
        model=directory(f"{OUT}/{{name}}/12_{{model}}_model"),
        embedding=f"{OUT}/{{name}}/12_{{model}}_embedding.arrow",
        history=f"{OUT}/{{name}}/12_{{model}}_log.arrow",
    log:
        f"{OUT}/{{name}}/logs/12_train_{{model}}.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/12_train_{{model}}.tsv"
    wildcard_constraints:
        model=r"(?!claire_|claire$)[a-z][a-z0-9_]*",
    params:
        tool=tool("train"),
        inputs=lambda w, input: " ".join(
            f"--{k} {shlex.quote(str(v))}" for k, v in input.items() if k != "cells"
        ),
        args=lambda w: model_args(w.name, w.model),
    threads: config["threads"]
    resources:
        mem_mb=mem("train"),
        **gpu_resources(),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input.cells:q} --model {wildcards.model} {params.inputs} {params.args}"
        " --threads {threads} --embedding {output.embedding:q} --log {output.history:q}"
        " -o {output.model:q} > {log:q} 2>&1"


rule score_baseline:
    message: "{wildcards.name}: scIB metrics of the unintegrated PCA (benchmark baseline)"
    input:
        f"{OUT}/{{name}}/04_hvg.arrow",
    output:
        f"{OUT}/{{name}}/13_scores/pca.tsv",
    log:
        f"{OUT}/{{name}}/logs/13_score_pca.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/13_score_pca.tsv"
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
        "{params.tool} {input:q} --unintegrated {input:q} --label-key {params.label} {params.args}"
        " --threads {threads} -o {output:q} > {log:q} 2>&1"


rule score_model:
    message: "{wildcards.name}: scIB metrics of {wildcards.model}"
    input:
        embedding=lambda w: embedding_of(w.name, w.model),
        unintegrated=f"{OUT}/{{name}}/04_hvg.arrow",
    output:
        f"{OUT}/{{name}}/13_scores/{{model}}.tsv",
    log:
        f"{OUT}/{{name}}/logs/13_score_{{model}}.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/13_score_{{model}}.tsv"
    wildcard_constraints:
        name=names_where(lambda n: bool(label_key(n))),
        model=r"(?!claire$|pca$)[a-z][a-z0-9_]*",
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
        " --label-key {params.label} {params.args} --threads {threads} -o {output:q} > {log:q} 2>&1"


rule benchmark:
    message: "{wildcards.name}: benchmark of {params.n} model(s) against PCA"
    input:
        # every embedding scored once, by its own job (CLAIRE's is scores.tsv), the PCA
        # baseline by score_baseline; joined here
        scores=lambda w: [f"{OUT}/{w.name}/13_scores/pca.tsv"] + [scores_of(w.name, m) for m in models_of(w.name)],
        times=lambda w: [b for m in models_of(w.name) for b in benchmarks_of(w.name, m)],
    output:
        scores=f"{OUT}/{{name}}/13_benchmark_scores.tsv",
        table=f"{OUT}/{{name}}/benchmark.tsv",
    log:
        f"{OUT}/{{name}}/logs/13_benchmark.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/13_benchmark.tsv"
    wildcard_constraints:
        name=names_where(lambda n: bool(label_key(n))),
    params:
        n=lambda w: len(models_of(w.name)),
        script=str(WORKFLOW_DIR.parent / "scripts" / "benchmark_table.py"),
        models=lambda w: " ".join(
            "--model " + " ".join(shlex.quote(x) for x in [m] + benchmarks_of(w.name, m)) for m in models_of(w.name)
        ),
    threads: 1
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "python3 {params.script:q} {output.scores:q} {output.table:q} --join {input.scores:q}"
        " --baseline pca {params.models} > {log:q} 2>&1"


rule plot_benchmark:
    message: "{wildcards.name}: benchmark figure"
    input:
        f"{OUT}/{{name}}/benchmark.tsv",
    output:
        f"{OUT}/{{name}}/benchmark.png",
    log:
        f"{OUT}/{{name}}/logs/14_plot_benchmark.log",
    params:
        tool=tool("plot"),
    threads: 1
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} --scores {input:q} --title {wildcards.name:q} -o {output:q} > {log:q} 2>&1"


rule plot_models:
    message: "{wildcards.name}: UMAP of every model"
    input:
        lambda w: [embedding_of(w.name, m) for m in models_of(w.name)],
    output:
        f"{OUT}/{{name}}/umap_models.png",
    log:
        f"{OUT}/{{name}}/logs/14_plot_models.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/14_plot_models.tsv"
    wildcard_constraints:
        name=names_where(lambda n: len(models_of(n)) > 1),
    params:
        tool=tool("plot"),
        colors=lambda w: colors(w.name),
        args=" ".join(x for x in [flag("seed", config["plot"]["seed"]), extra("plot")] if x),
    threads: min(config["threads"], config["plot"]["threads"])
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input:q} {params.colors} {params.args} --threads {threads}"
        " -o {output:q} > {log:q} 2>&1"
