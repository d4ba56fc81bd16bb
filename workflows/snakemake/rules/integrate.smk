# CLAIRE: seed pairs (scattered per batch pair when there are more than two batches)
# -> train stage 1 -> refine the seeds -> train stage 2 -> the integrated embedding.


rule pairs_shard:
    message: "{wildcards.name}: seed pairs between two batches ({wildcards.shard})"
    input:
        f"{OUT}/{{name}}/04_hvg.arrow",
    output:
        f"{OUT}/{{name}}/05_pairs/{{shard}}.arrow",
    log:
        f"{OUT}/{{name}}/logs/05_pairs_{{shard}}.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/05_pairs_{{shard}}.tsv"
    wildcard_constraints:
        shard=r"[^/]+--[^/]+|pair\d+",
    params:
        tool=tool("pairs"),
        args=lambda w: pairs_args(w.name),
        a=lambda w: shlex.quote(shards_of(w.name)[w.shard][0]),
        b=lambda w: shlex.quote(shards_of(w.name)[w.shard][1]),
    # pair shards make little use of a second thread (1M cells: 29-30 CPU s in 40-45 s wall
    # on 2 threads): one thread each, so that as many run side by side as there are cores
    threads: min(config["threads"], config["pairs"]["shard_threads"])
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input:q} {params.args} --batch-a {params.a} --batch-b {params.b}"
        " --threads {threads} -o {output:q} > {log:q} 2>&1"


rule pairs_knn:
    message: "{wildcards.name}: intra-batch nearest neighbours"
    input:
        f"{OUT}/{{name}}/04_hvg.arrow",
    output:
        f"{OUT}/{{name}}/05_pairs/knn.arrow",
    log:
        f"{OUT}/{{name}}/logs/05_pairs_knn.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/05_pairs_knn.tsv"
    params:
        tool=tool("pairs"),
        args=lambda w: pairs_args(w.name),
    threads: config["threads"]
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input:q} {params.args} --knn-only --threads {threads} -o {output:q} > {log:q} 2>&1"


rule pairs_merge:
    message: "{wildcards.name}: merge the pair shards"
    input:
        cells=f"{OUT}/{{name}}/04_hvg.arrow",
        shards=lambda w: [f"{OUT}/{w.name}/05_pairs/{s}.arrow" for s in shards_of(w.name)]
        + [f"{OUT}/{w.name}/05_pairs/knn.arrow"],
    output:
        f"{OUT}/{{name}}/05_pairs.arrow",
    log:
        f"{OUT}/{{name}}/logs/05_pairs_merge.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/05_pairs_merge.tsv"
    wildcard_constraints:
        name=names_where(is_scattered),
    params:
        tool=tool("pairs"),
    threads: 1
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} --merge {input.shards:q} -o {output:q} > {log:q} 2>&1"


rule pairs_all:
    message: "{wildcards.name}: seed pairs and nearest neighbours (one job)"
    input:
        f"{OUT}/{{name}}/04_hvg.arrow",
    output:
        f"{OUT}/{{name}}/05_pairs.arrow",
    log:
        f"{OUT}/{{name}}/logs/05_pairs.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/05_pairs.tsv"
    wildcard_constraints:
        name=names_where(lambda n: not is_scattered(n)),
    params:
        tool=tool("pairs"),
        args=lambda w: pairs_args(w.name),
    threads: config["threads"]
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input:q} {params.args} --threads {threads} -o {output:q} > {log:q} 2>&1"


rule train_stage1:
    message: "{wildcards.name}: train CLAIRE, stage 1"
    input:
        cells=f"{OUT}/{{name}}/04_hvg.arrow",
        pairs=f"{OUT}/{{name}}/05_pairs.arrow",
    output:
        model=directory(f"{OUT}/{{name}}/06_stage1_model"),
        embedding=f"{OUT}/{{name}}/06_stage1_embedding.arrow",
        history=f"{OUT}/{{name}}/06_stage1_log.arrow",
    log:
        f"{OUT}/{{name}}/logs/06_train_stage1.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/06_train_stage1.tsv"
    params:
        tool=tool("train"),
        args=lambda w: train_args(w.name, 1),
    threads: config["threads"]
    resources:
        mem_mb=mem("train"),
        **gpu_resources(),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input.cells:q} --pairs {input.pairs:q} {params.args}"
        " --threads {threads} --embedding {output.embedding:q}"
        " --log {output.history:q} -o {output.model:q} > {log:q} 2>&1"


rule refine:
    message: "{wildcards.name}: refine the seed pairs"
    input:
        cells=f"{OUT}/{{name}}/04_hvg.arrow",
        pairs=f"{OUT}/{{name}}/05_pairs.arrow",
        embedding=f"{OUT}/{{name}}/06_stage1_embedding.arrow",
    output:
        f"{OUT}/{{name}}/07_refined_pairs.arrow",
    log:
        f"{OUT}/{{name}}/logs/07_refine.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/07_refine.tsv"
    params:
        tool=tool("refine"),
        args=lambda w: " ".join(
            x
            for x in [flags(("threshold", config["refine"]["threshold"]), ("labels", label_key(w.name))), extra("refine")]
            if x
        ),
    threads: 1
    resources:
        mem_mb=mem("default"),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input.cells:q} --pairs {input.pairs:q} --embedding {input.embedding:q} {params.args}"
        " -o {output:q} > {log:q} 2>&1"


rule train_stage2:
    message: "{wildcards.name}: train CLAIRE, stage 2"
    input:
        cells=f"{OUT}/{{name}}/04_hvg.arrow",
        pairs=f"{OUT}/{{name}}/07_refined_pairs.arrow",
        init=f"{OUT}/{{name}}/06_stage1_model",
    output:
        model=directory(f"{OUT}/{{name}}/08_claire_model"),
        embedding=f"{OUT}/{{name}}/08_claire_embedding.arrow",
        history=f"{OUT}/{{name}}/08_claire_log.arrow",
    log:
        f"{OUT}/{{name}}/logs/08_train_stage2.log",
    benchmark:
        f"{OUT}/{{name}}/benchmarks/08_train_stage2.tsv"
    params:
        tool=tool("train"),
        args=lambda w: train_args(w.name, 2),
    threads: config["threads"]
    resources:
        mem_mb=mem("train"),
        **gpu_resources(),
    conda:
        CONDA_ENV
    shell:
        "{params.tool} {input.cells:q} --pairs {input.pairs:q} --init {input.init:q}"
        " --no-refine {params.args} --threads {threads}"
        " --embedding {output.embedding:q} --log {output.history:q}"
        " -o {output.model:q} > {log:q} 2>&1"
