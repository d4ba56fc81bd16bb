//! The Snakemake test workflow on the shared data, exactly as the README runs it
//! (`snakemake -s workflows/snakemake/Snakefile --cores 2 --configfile workflows/snakemake/config/test.yaml`,
//! here in a temporary working directory): it produces integrated.h5ad, scores.tsv and umap.png
//! for cellbench_3tech and kang_ifnb with every intermediate table, log and benchmark; the h5ad
//! is read back with Python's anndata; re-running is a no-op; deleting an intermediate re-runs
//! only what depends on it.

mod workflow_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Instant, SystemTime};
use workflow_support::{job_counts, repo, snakemake, text, venv_bin};

const STAGES: [&str; 10] = [
    "01_import",
    "02_filter",
    "03_normalize",
    "04_hvg",
    "06_train_stage1",
    "07_refine",
    "08_train_stage2",
    "09_plot",
    "10_export",
    "11_score",
];

const FILES: [&str; 26] = [
    "01_raw.arrow",
    "02_filtered.arrow",
    "02_qc.tsv",
    "02_genes_qc.tsv",
    "03_normalized.arrow",
    "04_hvg.arrow",
    "04_hvg_genes.arrow",
    "05_pairs/knn.arrow",
    "05_pairs.arrow",
    "06_stage1_model",
    "06_stage1_embedding.arrow",
    "06_stage1_log.arrow",
    "07_refined_pairs.arrow",
    "08_claire_model",
    "08_claire_embedding.arrow",
    "08_claire_log.arrow",
    "09_umap.arrow",
    "umap.png",
    "integrated.h5ad",
    "scores.tsv",
    "12_invae_model",
    "12_invae_embedding.arrow",
    "12_invae_log.arrow",
    "benchmark.tsv",
    "benchmark.png",
    "umap_models.png",
];

/// Reads integrated.h5ad with anndata and, when the raw input is an h5ad, compares
/// layers['counts'] with its counts for the same cells and genes.
const CHECK_H5AD: &str = r#"
import json, sys
import anndata as ad, numpy as np, scipy.sparse as sp
a = ad.read_h5ad(sys.argv[1])
dense = lambda m: m.toarray() if sp.issparse(m) else np.asarray(m)
c = dense(a.layers["counts"]) if "counts" in a.layers else None
x = dense(a.X)
r = {"n_obs": a.n_obs, "n_vars": a.n_vars, "layers": sorted(a.layers.keys()),
     "obsm": {k: list(np.asarray(v).shape) for k, v in a.obsm.items()}, "obs": list(a.obs.columns),
     "counts_integer": bool(c is not None and np.all(c == np.round(c)) and c.min() >= 0),
     "x_log1p_range": [float(x.min()), float(x.max())]}
if "X_claire" in a.obsm:
    n = np.linalg.norm(np.asarray(a.obsm["X_claire"]), axis=1)
    r["claire_norm_range"] = [float(n.min()), float(n.max())]
if len(sys.argv) > 2 and c is not None:
    raw = ad.read_h5ad(sys.argv[2])
    m = raw.layers[sys.argv[3]] if len(sys.argv) > 3 else raw.X
    raw = ad.AnnData(X=m, obs=raw.obs, var=raw.var)
    genes = [g for g in a.var_names if g in raw.var_names]
    if not genes and "gene_ids" in raw.var:
        raw.var_names = raw.var["gene_ids"].astype(str)
        genes = [g for g in a.var_names if g in raw.var_names]
    r["genes_matched"] = len(genes)
    sub = dense(raw[a.obs_names, genes].X)
    r["counts_equal_input"] = bool(len(genes) == a.n_vars and np.array_equal(sub, c))
print(json.dumps(r))
"#;

/// integrated.h5ad as a scanpy user opens it: every filtered gene in X (log1p of the
/// normalized counts, with scanpy's log1p mark), counts, QC, HVG statistics, the neighbour
/// graph of X_claire, colours; then leiden, rank_genes_groups on all genes and a UMAP
/// picture without recomputing anything. Prints a JSON summary.
const SCANPY_USER: &str = r#"
import io, json, sys
import numpy as np, scipy.sparse as sp, scanpy as sc, matplotlib
matplotlib.use('Agg')
path, n_filtered, label, png = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
a = sc.read_h5ad(path)
r = {'n_vars': a.n_vars, 'n_filtered': n_filtered}
assert a.n_vars == n_filtered, f'{a.n_vars} genes in X, {n_filtered} passed the filter'
assert a.var_names.is_unique and 'gene_ids' in a.var, list(a.var.columns)
hvg_cols = ['highly_variable', 'means', 'dispersions', 'dispersions_norm',
            'highly_variable_nbatches', 'highly_variable_intersection']
missing = [c for c in hvg_cols if c not in a.var]
assert not missing, f'var lacks {missing}: {list(a.var.columns)}'
assert 'highly_variable_rank' not in a.var, 'seurat flavor has no rank in scanpy'
r['n_hvg'] = int(a.var['highly_variable'].sum())
assert a.uns['hvg']['flavor'] == 'seurat', a.uns['hvg']
assert 'log1p' in a.uns and a.uns['log1p'].get('base') is None, a.uns.get('log1p')
assert a.obsm['X_pca'].shape == (a.n_obs, 50) and a.varm['PCs'].shape == (a.n_vars, 50)
assert len(a.uns['pca']['variance_ratio']) == 50, a.uns['pca']
c = a.layers['counts'].tocsr().astype(np.float64)
tot = np.asarray(c.sum(1)).ravel()
ref = sp.diags(1e4 / tot) @ c
ref.data = np.log1p(ref.data)
r['x_max_abs_diff'] = float(abs(a.X.astype(np.float64) - ref).max())
assert r['x_max_abs_diff'] < 1e-4, 'X is not log1p(normalize_total(counts))'
qc = sc.pp.calculate_qc_metrics(sc.AnnData(X=a.layers['counts'], var=a.var[['mt']]),
                                qc_vars=['mt'], percent_top=None)[0]
for col in ['n_genes_by_counts', 'total_counts', 'pct_counts_mt']:
    assert np.allclose(a.obs[col].values, qc[col].values, rtol=1e-5, atol=1e-4), col
prov = a.uns['cellweave_provenance']
keys = sorted(prov)
assert isinstance(prov, dict) and keys[-1].endswith('cellweave-export'), keys
assert isinstance(prov[keys[0]]['params'], dict), prov[keys[0]]
nb = a.uns['neighbors']
assert nb['connectivities_key'] == 'connectivities' and nb['params']['use_rep'] == 'X_claire', nb
assert nb['params']['n_neighbors'] == 15 and nb['params']['method'] == 'umap', nb
b = a.copy()
sc.pp.neighbors(b, n_neighbors=15, use_rep='X_claire', key_added='again')
same = (b.obsp['again_distances'] > 0).multiply(a.obsp['distances'] > 0).sum()
r['knn_overlap'] = float(same / (b.obsp['again_distances'] > 0).sum())
r['conn_max_abs_diff'] = float(abs(b.obsp['again_connectivities'] - a.obsp['connectivities']).max())
# A neighbour that only one of the two graphs has must be a tie at the k-th distance (float
# rounding of two implementations): its distance against the other graph's farthest, relative.
# The connectivities are compared between rows whose neighbour sets agree on both ends.
A, B = a.obsp['distances'].tocsr(), b.obsp['again_distances'].tocsr()
same_rows = np.ones(A.shape[0], dtype=bool)
gap = 0.0
for i in range(A.shape[0]):
    da = dict(zip(A.indices[A.indptr[i]:A.indptr[i + 1]], A.data[A.indptr[i]:A.indptr[i + 1]]))
    db = dict(zip(B.indices[B.indptr[i]:B.indptr[i + 1]], B.data[B.indptr[i]:B.indptr[i + 1]]))
    if set(da) != set(db):
        same_rows[i] = False
        ka, kb = max(da.values()), max(db.values())
        gap = max([gap] + [abs(da[j] - kb) / kb for j in set(da) - set(db)]
                  + [abs(db[j] - ka) / ka for j in set(db) - set(da)])
r['knn_tie_gap'] = float(gap)
r['rows_differing'] = int((~same_rows).sum())
d = abs(b.obsp['again_connectivities'] - a.obsp['connectivities']).tocoo()
keep = same_rows[d.row] & same_rows[d.col]
r['conn_max_abs_diff_same_rows'] = float(d.data[keep].max()) if keep.any() else 0.0
del b
for key in ['batch', label]:
    cols = list(a.uns[f'{key}_colors'])
    assert len(cols) == len(a.obs[key].cat.categories), (key, cols)
    r[f'{key}_colors'] = cols
sc.tl.leiden(a, flavor='igraph', n_iterations=2, directed=False)
r['n_leiden'] = int(a.obs['leiden'].nunique())
sc.tl.rank_genes_groups(a, 'leiden')
r['rank_genes'] = int(len(a.uns['rank_genes_groups']['names']))
assert r['rank_genes'] == a.n_vars, 'rank_genes_groups did not rank every gene'
fig = sc.pl.umap(a, color=['batch', label, 'leiden'], show=False, return_fig=True)
fig.savefig(png)
for key in ['batch', label]:
    assert list(a.uns[f'{key}_colors']) == r[f'{key}_colors'], 'scanpy replaced the colours'
log = io.StringIO()
sc.settings.logfile = log
sc.pp.log1p(a)
r['log1p_guard'] = 'already log-transformed' in log.getvalue()
print(json.dumps(r))
"#;

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn snakemake_test_workflow_on_the_shared_data() {
    let Some(shared) = cellweave_tests::shared() else {
        return;
    };
    let Some(smk) = venv_bin("snakemake") else {
        return;
    };
    let python = venv_bin("python").expect("venv python");
    let work = tempfile::tempdir().unwrap();
    let config = repo().join("workflows/snakemake/config/test.yaml");
    let cfg = ["--configfile", config.to_str().unwrap()];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = cfg.iter().chain(extra).copied().collect();
        snakemake(&smk, work.path(), Some(&shared), &args)
    };

    // 1. The whole chain for both data sets.
    let t0 = Instant::now();
    let out = run(&["--quiet", "rules"]);
    assert!(
        out.status.success(),
        "the test workflow failed:\n{}",
        text(&out)
    );
    eprintln!(
        "snakemake test workflow: {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let results = work.path().join("results/test");
    let shards: [(&str, &str, Vec<&str>); 2] = [
        (
            "cellbench_3tech",
            "cellbench_3tech/cellbench_3tech.h5ad",
            vec!["10x--CELseq2", "10x--Dropseq", "CELseq2--Dropseq"],
        ),
        (
            "kang_ifnb",
            "kang_ifnb/kang_ifnb.h5ad",
            vec![
                "ctrl101--ctrl107",
                "ctrl101--stim101",
                "ctrl101--stim107",
                "ctrl107--stim101",
                "ctrl107--stim107",
                "stim101--stim107",
            ],
        ),
    ];
    for (name, input, pairs) in &shards {
        let d = results.join(name);
        // 2. Every intermediate kept, one log and one benchmark per job.
        for f in FILES {
            let p = d.join(f);
            assert!(p.exists(), "{name}: {f} is missing");
            if p.is_file() {
                assert!(
                    std::fs::metadata(&p).unwrap().len() > 0,
                    "{name}: {f} is empty"
                );
            }
        }
        let mut jobs: Vec<String> = STAGES.iter().map(|s| s.to_string()).collect();
        jobs.extend(["05_pairs_knn".to_string(), "05_pairs_merge".to_string()]);
        jobs.extend(pairs.iter().map(|s| format!("05_pairs_{s}")));
        for s in pairs {
            assert!(
                d.join(format!("05_pairs/{s}.arrow")).is_file(),
                "{name}: no pair shard {s}"
            );
        }
        for j in &jobs {
            let log = d.join(format!("logs/{j}.log"));
            assert!(log.is_file(), "{name}: no log {}", log.display());
            let bench =
                std::fs::read_to_string(d.join(format!("benchmarks/{j}.tsv"))).unwrap_or_default();
            assert!(
                bench.starts_with("s\th:m:s\tmax_rss"),
                "{name}: benchmark of {j}: {bench:?}"
            );
        }
        let n_shards = std::fs::read_dir(d.join("05_pairs")).unwrap().count();
        assert_eq!(n_shards, pairs.len() + 1, "{name}: pair shards + knn");

        // 3. integrated.h5ad as anndata reads it.
        let mut cmd = std::process::Command::new(&python);
        cmd.args(["-c", CHECK_H5AD])
            .arg(d.join("integrated.h5ad"))
            .arg(shared.join("data").join(input))
            .arg("counts");
        let out = python_ok(
            &mut cmd,
            &format!("{name}: anndata could not read integrated.h5ad"),
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let n = r["n_obs"].as_u64().unwrap();
        assert!(n > 1000, "{name}: {r}");
        assert_eq!(r["layers"], serde_json::json!(["counts"]), "{name}: {r}");
        assert_eq!(
            r["obsm"]["X_claire"],
            serde_json::json!([n, 128]),
            "{name}: {r}"
        );
        assert_eq!(
            r["obsm"]["X_umap"],
            serde_json::json!([n, 2]),
            "{name}: {r}"
        );
        assert_eq!(
            r["obsm"]["X_invae"],
            serde_json::json!([n, 9]),
            "{name}: {r}"
        );
        for col in ["batch", "cell_type"] {
            assert!(
                r["obs"].as_array().unwrap().iter().any(|c| c == col),
                "{name}: obs lacks {col}: {r}"
            );
        }
        assert_eq!(r["counts_integer"], true, "{name}: {r}");
        assert_eq!(
            r["counts_equal_input"], true,
            "{name}: layers['counts'] differs from the input counts: {r}"
        );
        let norms = r["claire_norm_range"].as_array().unwrap();
        assert!(
            norms
                .iter()
                .all(|v| (v.as_f64().unwrap() - 1.0).abs() < 1e-3),
            "{name}: X_claire not L2-normalized: {r}"
        );

        // 3b. ... and as a scanpy user works with it (issue 13).
        if let Some(ref_py) = cellweave_tests::reference_python(&["scanpy", "igraph"]) {
            let filtered = cellweave::io::table::read_cells(&d.join("02_filtered.arrow")).unwrap();
            let mut cmd = std::process::Command::new(&ref_py);
            cmd.args(["-c", SCANPY_USER])
                .arg(d.join("integrated.h5ad"))
                .arg(filtered.n_genes().to_string())
                .arg("cell_type")
                .arg(work.path().join(format!("{name}_scanpy_umap.png")))
                .env("MPLCONFIGDIR", work.path())
                .env("NUMBA_CACHE_DIR", work.path());
            let out = python_ok(
                &mut cmd,
                &format!("{name}: scanpy could not work with integrated.h5ad"),
            );
            let last = String::from_utf8_lossy(&out.stdout);
            let r: serde_json::Value =
                serde_json::from_str(last.lines().last().unwrap_or("")).expect("json");
            eprintln!("{name}: scanpy on integrated.h5ad: {r}");
            assert_eq!(r["log1p_guard"], true, "{name}: no log1p warning: {r}");
            assert!(r["n_leiden"].as_u64().unwrap() >= 2, "{name}: {r}");
            let n_vars = r["n_vars"].as_u64().unwrap();
            assert_eq!(r["n_hvg"], n_vars.min(2000), "{name}: {r}");
            assert!(r["x_max_abs_diff"].as_f64().unwrap() < 1e-4, "{name}: {r}");
            // scanpy's own graph on the same embedding: exact below 4,096 cells, an
            // approximate (pynndescent) search above, so allow a few differing neighbours.
            assert!(r["knn_overlap"].as_f64().unwrap() > 0.97, "{name}: {r}");
            if n < 4096 {
                // Exact search on both sides: the graphs may differ only where two
                // neighbours tie at the k-th distance within float rounding (a few rows),
                // and the connectivities agree wherever the neighbour sets do.
                assert!(r["knn_tie_gap"].as_f64().unwrap() < 1e-4, "{name}: {r}");
                assert!(r["rows_differing"].as_u64().unwrap() <= 3, "{name}: {r}");
                assert!(
                    r["conn_max_abs_diff_same_rows"].as_f64().unwrap() < 1e-3,
                    "{name}: {r}"
                );
            }
        }

        // 4. The benchmark of every model: a row per model and the PCA baseline, every
        // metric present and finite, wall time and peak memory per model, highest total first;
        // every model's embedding in integrated.h5ad.
        let bench = std::fs::read_to_string(d.join("benchmark.tsv")).unwrap();
        let mut lines = bench.lines();
        let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
        let mut names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
        names.sort();
        assert_eq!(names, ["claire", "invae", "pca"], "{name}: {bench}");
        let col = |h: &str| {
            header
                .iter()
                .position(|x| *x == h)
                .unwrap_or_else(|| panic!("{name}: no column {h}: {bench}"))
        };
        let totals: Vec<f64> = rows
            .iter()
            .map(|r| r[col("agg_scib_classic_total")].parse().unwrap())
            .collect();
        assert!(
            totals.windows(2).all(|w| w[0] >= w[1]),
            "{name}: not sorted by total: {bench}"
        );
        for r in &rows {
            assert_eq!(r.len(), header.len(), "{name}: {bench}");
            for (h, v) in header.iter().zip(r).skip(1) {
                let is_usage = ["wall_s", "max_rss_mb"].contains(h);
                if is_usage && r[0] == "pca" {
                    continue;
                }
                let x: f64 = v
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: {h} of {} is '{v}': {bench}", r[0]));
                assert!(
                    x.is_finite() && (!is_usage || x > 0.0),
                    "{name}: {h} of {}: {bench}",
                    r[0]
                );
            }
        }
        assert!(header.len() >= 15, "{name}: too few metrics: {bench}");

        // 5. The scores and the picture.
        let scores = std::fs::read_to_string(d.join("scores.tsv")).unwrap();
        let mut lines = scores.lines();
        let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
        let row: Vec<&str> = lines.next().expect("a scores row").split('\t').collect();
        assert_eq!(header.len(), row.len(), "{name}: {scores}");
        let values: BTreeMap<&str, f64> = header
            .iter()
            .zip(&row)
            .filter_map(|(h, v)| Some((*h, v.parse::<f64>().ok()?)))
            .collect();
        assert!(
            values.len() >= 10,
            "{name}: too few numeric metrics: {scores}"
        );
        assert!(values.values().all(|v| v.is_finite()), "{name}: {scores}");
        // Issue 3's quality target with default parameters: the classic scIB total (0.6 bio +
        // 0.4 batch, scored as the shared reference JSONs were) is at least the best of
        // Harmony and Scanorama on the same data, and refinement raises seed accuracy.
        let reference_total = |method: &str| -> f64 {
            let p = shared.join(format!("reference/{name}/score_{method}.json"));
            let j: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            j["agg_scib_classic"]["total"]
                .as_f64()
                .unwrap_or_else(|| panic!("{}: no agg_scib_classic.total", p.display()))
        };
        let target = reference_total("harmony").max(reference_total("scanorama"));
        let pca_total = reference_total("pca");
        let total = values["agg_scib_classic_total"];
        eprintln!(
            "{name}: classic scIB total {total:.4} (target: best of Harmony/Scanorama {target:.4}; unintegrated PCA {pca_total:.4})"
        );
        assert!(
            total >= target,
            "{name}: classic scIB total {total:.4} below the best of Harmony/Scanorama {target:.4}: {scores}"
        );
        let refine = std::fs::read_to_string(d.join("logs/07_refine.log")).unwrap();
        let acc: Vec<f64> = refine
            .lines()
            .find(|l| l.starts_with("seed accuracy:"))
            .unwrap_or_else(|| panic!("{name}: no seed accuracy in the refine log:\n{refine}"))
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        eprintln!("{name}: seed accuracy before/after refinement {acc:?}");
        assert!(
            acc.len() == 2 && acc[1] > acc[0],
            "{name}: refinement did not raise seed accuracy (before/after {acc:?})"
        );
        let png = std::fs::read(d.join("umap.png")).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{name}: umap.png is not a picture"
        );
        // The UMAP of every model: one row of panels per model (claire, invae), each row as
        // wide as umap.png's panels and at least as high.
        let size = |f: &str| {
            let png = std::fs::read(d.join(f)).unwrap();
            assert!(
                png.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{name}: {f} is not a PNG"
            );
            let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
            (be(16), be(20))
        };
        let ((w1, h1), (w, h)) = (size("umap.png"), size("umap_models.png"));
        assert!(
            w == w1 && h >= 2 * h1 && h < 3 * h1,
            "{name}: umap_models.png is {w}x{h}, umap.png {w1}x{h1}: expected two rows"
        );
    }

    // 5. Re-running is a no-op.
    let out = run(&["--dry-run"]);
    assert!(
        out.status.success() && text(&out).contains("Nothing to be done"),
        "re-run is not a no-op:\n{}",
        text(&out)
    );

    // 6. Deleting an intermediate re-runs only what depends on it.
    let d = results.join("cellbench_3tech");
    let upstream: Vec<_> = [
        "01_raw.arrow",
        "04_hvg.arrow",
        "05_pairs.arrow",
        "06_stage1_embedding.arrow",
    ]
    .iter()
    .map(|f| (d.join(f), mtime(&d.join(f))))
    .chain(std::iter::once((
        results.join("kang_ifnb/integrated.h5ad"),
        mtime(&results.join("kang_ifnb/integrated.h5ad")),
    )))
    .collect();
    std::fs::remove_file(d.join("07_refined_pairs.arrow")).unwrap();
    let out = run(&["--dry-run"]);
    let jobs = job_counts(&text(&out));
    let expected: BTreeMap<String, usize> =
        // The benchmark table, its figure and the UMAP of every model read CLAIRE's embedding too.
        [
            "all",
            "benchmark",
            "export",
            "plot",
            "plot_benchmark",
            "plot_models",
            "refine",
            "score",
            "train_stage2",
        ]
        .iter()
            .map(|r| (r.to_string(), 1))
            .collect();
    assert_eq!(
        jobs,
        expected,
        "after deleting 07_refined_pairs.arrow:\n{}",
        text(&out)
    );
    let out = run(&["--quiet", "rules"]);
    assert!(out.status.success(), "the re-run failed:\n{}", text(&out));
    assert!(d.join("07_refined_pairs.arrow").is_file() && d.join("integrated.h5ad").is_file());
    for (p, t) in upstream {
        assert_eq!(mtime(&p), t, "{} was rewritten", p.display());
    }
}

/// Run a Python check; it must succeed (else the message is `failure` and its output).
fn python_ok(cmd: &mut std::process::Command, failure: &str) -> std::process::Output {
    let out = cmd.output().expect("python");
    assert!(out.status.success(), "{failure}:\n{}", text(&out));
    out
}
