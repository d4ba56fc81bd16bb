#!/usr/bin/env nextflow
/*
 * cellweave as a Nextflow DSL2 pipeline: the same chain, config vocabulary, outputs and layout
 * as the Snakemake workflow in ../snakemake.
 *
 *   nextflow run workflows/nextflow -params-file workflows/snakemake/config/test.yaml
 *   nextflow run workflows/nextflow -profile test            (the same test data sets)
 *   nextflow run workflows/nextflow -profile slurm,singularity -params-file my.yaml
 *
 * Per data set: import (or simulate) -> filter -> normalize -> hvg -> pairs (one task per batch
 * pair plus one for the KNN lists, merged; one task when there are two batches or fewer) ->
 * train stage 1 -> refine -> train stage 2 -> plot (UMAP) -> export (integrated.h5ad) -> score
 * (when a label_key is given); impute where the data set says `impute: true`.
 * The other models a data set lists (`models: [claire, invae, ...]`) train as one cellweave-train
 * call each, with the inputs config models.inputs gives them (a new model is one line there);
 * integrated.h5ad holds every model's embedding, umap_models.png draws every model's UMAP (more
 * than one model), and with a label_key benchmark.tsv scores every model beside PCA (scIB
 * metrics, wall time and peak memory from each job's benchmark file) and benchmark.png draws it.
 * Parameters: schemas/config.schema.yaml (mirrored by nextflow_schema.json, whose defaults fill
 * in whatever a params file leaves out, stage by stage).
 */
nextflow.enable.dsl = 2

include { CELLWEAVE_IMPORT                          } from './modules/local/import'
include { CELLWEAVE_SIMULATE                        } from './modules/local/simulate'
include { CELLWEAVE_FILTER                          } from './modules/local/filter'
include { CELLWEAVE_NORMALIZE                       } from './modules/local/normalize'
include { CELLWEAVE_HVG                             } from './modules/local/hvg'
include { CELLWEAVE_PAIRS                           } from './modules/local/pairs'
include { CELLWEAVE_PAIRS_MERGE                     } from './modules/local/pairs/merge'
include { CELLWEAVE_PAIRS_DEEPMNN                   } from './modules/local/pairs/deepmnn'
include { CELLWEAVE_TRAIN as CELLWEAVE_TRAIN_STAGE1 } from './modules/local/train'
include { CELLWEAVE_TRAIN as CELLWEAVE_TRAIN_STAGE2 } from './modules/local/train'
include { CELLWEAVE_REFINE                          } from './modules/local/refine'
include { CELLWEAVE_PLOT                            } from './modules/local/plot'
include { CELLWEAVE_EXPORT                          } from './modules/local/export'
include { CELLWEAVE_SCORE                           } from './modules/local/score'
include { CELLWEAVE_TRAIN_MODEL                     } from './modules/local/train/model'
include { CELLWEAVE_BENCHMARK                       } from './modules/local/benchmark'
include { CELLWEAVE_PLOT_SCORES                     } from './modules/local/plot/scores'
include { CELLWEAVE_PLOT_MODELS                     } from './modules/local/plot/models'
include { CELLWEAVE_IMPUTE                          } from './modules/local/impute'

// ---------------------------------------------------------------------------------------------
// Options: params over the schema defaults (nested maps merged key by key, so that a params file
// may set `train: {epochs: 20}` alone).

def schemaDefaults(Map props) {
    props.findAll { k, v -> v instanceof Map && (v.containsKey('default') || v.type == 'object') }
        .collectEntries { k, v ->
            def d = v['default']
            if (v.type == 'object' && v.properties) {
                d = schemaDefaults(v.properties) + (d ?: [:])
            }
            [(k): d]
        }
        .findAll { k, v -> v != null || props[k].containsKey('default') }
}

def deepMerge(Map base, Map over) {
    def out = new LinkedHashMap(base)
    over.each { k, v ->
        out[k] = (v instanceof Map && base[k] instanceof Map) ? deepMerge(base[k] as Map, v as Map) : v
    }
    out
}

// "$VAR" / "${VAR}" in a configured path; $CELLWEAVE_SHARED defaults to ../shared beside the repository.
def expandPath(String p) {
    def shared = System.getenv('CELLWEAVE_SHARED') ?: "${projectDir}/../../../shared"
    p.replaceAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/) { all, name ->
        name == 'CELLWEAVE_SHARED' ? shared : (System.getenv(name) ?: '')
    }
}

def options() {
    def schema = new groovy.json.JsonSlurper().parse(file("${projectDir}/nextflow_schema.json").toFile())
    def props = [:]
    schema['$defs'].each { group, g -> props.putAll(g.properties ?: [:]) }
    def opts = deepMerge(schemaDefaults(props), new LinkedHashMap(params))
    if (!opts.datasets) {
        error "No datasets: give a params file (-params-file, the same YAML as the Snakemake config) or -profile test"
    }
    def dsDefaults = schemaDefaults(props.datasets.additionalProperties.properties)
    opts.datasets = opts.datasets.collectEntries { name, d -> [(name): deepMerge(dsDefaults, d as Map)] }
    def known = (opts.models.inputs.keySet() + ['claire']) as Set
    opts.datasets.each { name, d ->
        d.models.findAll { !(it in known) }.each { m ->
            error "data set '${name}': model '${m}' is not in models.inputs (known: ${known.sort().join(', ')}); add a line `${m}: [counts|pairs ...]` there"
        }
    }
    opts
}

// ---------------------------------------------------------------------------------------------
// Batches and shards of the pairs stage (as the Snakemake workflow: from the config, the obs TSV,
// or the simulator's naming; unknown -> one pairs task).

def batchesOf(Map d) {
    if (d.batches) { return d.batches }
    if (d.batch) { return ((d.batch instanceof List ? d.batch : [d.batch]) as List).unique().sort() }
    // cellweave-simulate names its batches b0, b1, ...
    if (d.simulate) { return (0..<(d.simulate.batches as int)).collect { "b${it}".toString() } }
    if (d.obs) {
        def path = expandPath(d.obs)
        def lines = file(path, checkIfExists: true).readLines()
        def header = lines[0].split('\t') as List
        def key = d.batch_key ?: 'batch'
        def col = header.indexOf(key)
        if (col < 0) {
            error "${path}: field '${key}': batch_key is not a column (columns: ${header.join(', ')})"
        }
        return lines.drop(1).findAll { it }.collect { it.split('\t', -1)[col] }.unique().sort()
    }
    return null
}

def shardsOf(Map d, Map opts) {
    def b = batchesOf(d)
    if (!opts.pairs.scatter || b == null || b.size() <= 2) { return [] }
    def safe = { String s -> s.replaceAll(/[^A-Za-z0-9_.-]/, '_') }
    def out = []
    for (int i = 0; i < b.size(); i++) {
        for (int j = i + 1; j < b.size(); j++) {
            out << [id: "${safe(b[i])}--${safe(b[j])}".toString(), a: b[i], b: b[j]]
        }
    }
    if (out*.id.unique().size() < out.size()) {
        out.eachWithIndex { s, k -> s.id = String.format('pair%03d', k) }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Command-line flags of every stage (scripts/check_nextflow.py checks each against the --help of
// the binary named by the key's first word). Files are staged by the modules, not passed here.

def q(v) { "'" + v.toString().replace("'", "'\\''") + "'" }

def flags(Map m) {
    m.findAll { k, v -> v != null && v != false }
        .collect { k, v -> v == true ? k : "${k} ${q(v)}" }
        .join(' ')
}

def stageArgs(Map o, Map d) {
    def batchNames = d.batch == null ? [] : (d.batch instanceof List ? d.batch : [d.batch])
    def colors = (['batch'] + (d.label_key ? [d.label_key] : [])).collect { "--color ${q(it)}" }
    def args = [
        import_        : [flags('--batch-key': d.batch_key, '--layer': d.counts_layer, '--make-unique': o['import'].make_unique, '--join': o['import'].join), batchNames.collect { "--batch ${q(it)}" }.join(' '), o['import'].extra],
        simulate       : [d.simulate ? flags('--cells': d.simulate.cells, '--genes': d.simulate.genes, '--batches': d.simulate.batches, '--cell-types': d.simulate.cell_types, '--seed': d.simulate.seed) : '', d.simulate?.extra],
        filter         : [flags('--min-cells': o.filter.min_cells, '--min-genes': o.filter.min_genes, '--max-genes': o.filter.max_genes, '--min-counts': o.filter.min_counts, '--max-counts': o.filter.max_counts, '--max-mito-pct': o.filter.max_mito_pct, '--mito-prefix': o.filter.mito_prefix), o.filter.extra],
        normalize      : [flags('--target-sum': o.normalize.target_sum, '--no-log': !o.normalize.log), o.normalize.extra],
        hvg            : [flags('--n-top-genes': o.hvg.n_top_genes, '--flavor': o.hvg.flavor), o.hvg.extra],
        pairs          : [flags('--space': o.pairs.space, '--labels': d.label_key), o.pairs.extra],
        train_stage1   : [flags('--stage1-only': true, '--stage1-epochs': o.train.stage1_epochs, '--device': o.train.device, '--seed': o.train.seed, '--labels': d.label_key), o.train.extra],
        train_stage2   : [flags('--epochs': o.train.epochs, '--device': o.train.device, '--seed': o.train.seed, '--labels': d.label_key), o.train.extra],
        train_model    : [flags('--device': o.train.device, '--seed': o.train.seed), o.models.extra],
        pairs_deepmnn  : [flags('--seed': o.train.seed)],
        refine         : [flags('--threshold': o.refine.threshold, '--labels': d.label_key), o.refine.extra],
        plot           : [colors.join(' '), flags('--seed': o.plot.seed), o.plot.extra],
        score          : [o.score.extra],
        impute         : [flags('--method': o.impute.method, '--scale': o.impute.scale, '--epochs': o.impute.epochs, '--only-zeros': o.impute.only_zeros, '--batch-aware': o.impute.batch_aware, '--seed': o.impute.seed, '--device': o.train.device), o.impute.extra],
    ]
    args.collectEntries { k, v -> [(k - ~/_$/): v.findAll { it }.join(' ')] }
}

// One meta map per data set: what every module's tag, outputs and ext.args need.
def datasetMeta(String name, Map d, Map opts) {
    [
        id       : name,
        input    : d.input == null ? [] : (d.input instanceof List ? d.input : [d.input]).collect { expandPath(it) },
        obs      : d.obs ? expandPath(d.obs) : null,
        simulate : d.simulate != null,
        label_key: d.label_key,
        impute   : d.impute,
        shards   : shardsOf(d, opts),
        models   : d.models,
        // Per model: the inputs of its cellweave-train call and its own flags (model_args).
        inputs   : d.models.collectEntries { m -> [(m): m == 'claire' ? ['pairs'] : opts.models.inputs[m]] },
        model_args: d.model_args,
        args     : stageArgs(opts, d),
    ]
}

// ---------------------------------------------------------------------------------------------

workflow {
    def opts = options()
    ch_versions = Channel.empty()

    ch_meta = Channel.fromList(opts.datasets.collect { name, d -> datasetMeta(name, d, opts) })
        .branch { meta ->
            simulated: meta.simulate
            imported: true
        }

    // Raw counts
    CELLWEAVE_SIMULATE(ch_meta.simulated)
    CELLWEAVE_IMPORT(
        ch_meta.imported.map { meta ->
            [meta, meta.input.collect { file(it, checkIfExists: true) }, meta.obs ? file(meta.obs, checkIfExists: true) : []]
        }
    )
    ch_raw = CELLWEAVE_SIMULATE.out.cells.mix(CELLWEAVE_IMPORT.out.cells)

    // Preprocessing
    CELLWEAVE_FILTER(ch_raw)
    CELLWEAVE_NORMALIZE(CELLWEAVE_FILTER.out.cells)
    CELLWEAVE_HVG(CELLWEAVE_NORMALIZE.out.cells)
    ch_hvg = CELLWEAVE_HVG.out.cells

    // Seed pairs: scattered per batch pair (+ KNN), then merged
    CELLWEAVE_PAIRS(
        ch_hvg.flatMap { meta, cells ->
            meta.shards ? (meta.shards + [[id: 'knn']]).collect { [meta, cells, it] } : [[meta, cells, [id: 'all']]]
        }
    )
    ch_pair_parts = CELLWEAVE_PAIRS.out.pairs.branch { meta, f ->
        scattered: meta.shards
        single: true
    }
    CELLWEAVE_PAIRS_MERGE(
        ch_pair_parts.scattered
            .map { meta, f -> [groupKey(meta, meta.shards.size() + 1), f] }
            .groupTuple()
            .map { key, files -> [key.getGroupTarget(), files] }
    )
    ch_pairs = CELLWEAVE_PAIRS_MERGE.out.pairs.mix(ch_pair_parts.single)

    // CLAIRE: stage 1, refine the seeds, stage 2
    CELLWEAVE_TRAIN_STAGE1(ch_hvg.join(ch_pairs).map { meta, cells, pairs -> [meta, cells, pairs, []] })
    CELLWEAVE_REFINE(ch_hvg.join(ch_pairs).join(CELLWEAVE_TRAIN_STAGE1.out.embedding))
    CELLWEAVE_TRAIN_STAGE2(ch_hvg.join(CELLWEAVE_REFINE.out.pairs).join(CELLWEAVE_TRAIN_STAGE1.out.model))
    ch_claire = CELLWEAVE_TRAIN_STAGE2.out.embedding

    // deepMNN's pairs, only for the data sets with a model that reads them
    CELLWEAVE_PAIRS_DEEPMNN(
        ch_hvg.filter { meta, cells -> meta.models.any { m -> 'deepmnn_pairs' in meta.inputs[m] } }
    )
    ch_model_pairs = ch_pairs.join(CELLWEAVE_PAIRS_DEEPMNN.out.pairs, remainder: true)
        .map { meta, pairs, dpairs -> [meta, pairs, dpairs ?: []] }

    // The other models of the data set: one cellweave-train call each, given the inputs
    // models.inputs lists for it ([] for the others)
    CELLWEAVE_TRAIN_MODEL(
        ch_hvg.join(CELLWEAVE_FILTER.out.cells).join(ch_model_pairs).flatMap { meta, cells, counts, pairs, dpairs ->
            meta.models.findAll { it != 'claire' }.collect { m ->
                def p = 'deepmnn_pairs' in meta.inputs[m] ? dpairs : 'pairs' in meta.inputs[m] ? pairs : []
                [meta, m, cells, 'counts' in meta.inputs[m] ? counts : [], p]
            }
        }
    )

    // Every model's run: [meta, [[model, embedding, [benchmark files of its jobs]], ...]] in the
    // data set's model order (CLAIRE first when unlisted: it feeds the UMAP and the export).
    // A model that reads the pairs also counts the pairs jobs, as CLAIRE does.
    ch_pair_bench = CELLWEAVE_PAIRS.out.bench.mix(CELLWEAVE_PAIRS_MERGE.out.bench)
        .map { meta, f -> [groupKey(meta, meta.shards ? meta.shards.size() + 2 : 1), f] }
        .groupTuple()
        .map { key, files -> [key.getGroupTarget(), files] }
    ch_runs = ch_claire
        .join(CELLWEAVE_TRAIN_STAGE1.out.bench).join(CELLWEAVE_REFINE.out.bench).join(CELLWEAVE_TRAIN_STAGE2.out.bench)
        .map { meta, e, b1, br, b2 -> [meta, 'claire', e, [b1, br, b2]] }
        .mix(CELLWEAVE_TRAIN_MODEL.out.run.map { meta, m, e, b -> [meta, m, e, [b]] })
        .combine(ch_pair_bench, by: 0)
        .map { meta, m, e, b, pb -> [meta, m, e, (m == 'claire' || 'pairs' in meta.inputs[m] ? pb : []) + b] }
        .map { meta, m, e, b -> [groupKey(meta, meta.models.count { it != 'claire' } + 1), [m, e, b]] }
        .groupTuple()
        .map { key, runs ->
            def meta = key.getGroupTarget()
            [meta, runs.sort { r -> meta.models.indexOf(r[0]) }]
        }
    // The runs of the models the data set lists
    ch_listed = ch_runs.map { meta, runs -> [meta, runs.findAll { r -> r[0] in meta.models }] }

    // What users look at
    CELLWEAVE_PLOT(ch_claire)
    CELLWEAVE_EXPORT(
        CELLWEAVE_NORMALIZE.out.cells.join(CELLWEAVE_FILTER.out.cells).join(CELLWEAVE_HVG.out.genes).join(ch_claire)
            .join(CELLWEAVE_PLOT.out.umap)
            .join(ch_runs.map { meta, runs -> [meta, runs.findAll { r -> r[0] != 'claire' }.collect { r -> r[1] }] })
    )
    CELLWEAVE_SCORE(ch_claire.filter { meta, e -> meta.label_key }.join(ch_hvg))
    CELLWEAVE_PLOT_MODELS(
        ch_listed.filter { meta, runs -> runs.size() > 1 }.map { meta, runs -> [meta, runs.collect { r -> r[1] }] }
    )

    // The benchmark of every listed model against PCA (data sets with a label key)
    CELLWEAVE_BENCHMARK(
        ch_listed.filter { meta, runs -> meta.label_key }
            .map { meta, runs ->
                [meta, runs.collect { r -> [r[0], r[2]*.name] }, runs.collect { r -> r[1] }, runs.collectMany { r -> r[2] }.unique()]
            }
            .join(ch_hvg),
        file("${projectDir}/../scripts/benchmark_table.py", checkIfExists: true)
    )
    CELLWEAVE_PLOT_SCORES(CELLWEAVE_BENCHMARK.out.table)
    CELLWEAVE_IMPUTE(CELLWEAVE_FILTER.out.cells.filter { meta, cells -> meta.impute })

    ch_versions = ch_versions.mix(
        CELLWEAVE_SIMULATE.out.versions, CELLWEAVE_IMPORT.out.versions, CELLWEAVE_FILTER.out.versions,
        CELLWEAVE_NORMALIZE.out.versions, CELLWEAVE_HVG.out.versions, CELLWEAVE_PAIRS.out.versions,
        CELLWEAVE_PAIRS_MERGE.out.versions, CELLWEAVE_TRAIN_STAGE1.out.versions, CELLWEAVE_REFINE.out.versions,
        CELLWEAVE_TRAIN_STAGE2.out.versions, CELLWEAVE_PLOT.out.versions, CELLWEAVE_EXPORT.out.versions,
        CELLWEAVE_SCORE.out.versions, CELLWEAVE_IMPUTE.out.versions, CELLWEAVE_TRAIN_MODEL.out.versions,
        CELLWEAVE_BENCHMARK.out.versions, CELLWEAVE_PLOT_SCORES.out.versions, CELLWEAVE_PLOT_MODELS.out.versions
    )
    ch_versions
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${opts.outdir}/pipeline_info", sort: true)
}
