//! cellweave-export read back by the tools users have: `anndata.read_h5ad` (and scipy for
//! the 10x folder) must see exactly what cellweave wrote, and cellweave-import must read
//! its own outputs back to the same tables.
//!
//! The exported table mimics a real pipeline: X = log1p values of a third of the genes, the
//! raw counts of those genes in `layers['counts']` (taken by id from the full raw table),
//! and an embedding stored in another cell order (aligned by id into `obsm['X_test']`).

mod io_support;

use cellweave::contract::{Column, EmbeddingTable, ValueKind};
use cellweave::io::table;
use cellweave_tests::{run_ok, shared};
use io_support::*;

const CHECK_H5AD: &str = r#"
import sys, json, numpy as np, pandas as pd, anndata as ad, scipy.sparse as sp
out, src, x_tsv, emb_tsv, emb_h5ad, mtx_dir = sys.argv[1:7]
a = ad.read_h5ad(out)
s = ad.read_h5ad(src)
keep = np.arange(0, s.n_vars, 3)
assert list(a.obs_names) == list(s.obs_names), 'cell ids'
assert list(a.var_names) == list(s.var_names[keep]), 'var names'
assert list(a.var['gene_ids']) == list(s.var['gene_ids'].iloc[keep]), 'gene ids'
assert sp.issparse(a.X) and a.X.dtype == np.float32, a.X.dtype
counts = a.layers['counts']
assert (counts != s.X[:, keep]).nnz == 0, 'layers[counts] differs from the source counts'
dense = pd.read_csv(x_tsv, sep='\t', index_col=0, dtype={'cell_id': str}).astype(np.float32)
assert list(dense.index) == list(a.obs_names) and list(dense.columns) == list(a.var['gene_ids'])
assert np.array_equal(a.X.toarray(), dense.values), 'X differs from the TSV export'
ref = np.log1p(counts.toarray().astype(np.float64))
assert np.allclose(a.X.toarray(), ref, rtol=1e-6, atol=0), 'X is not log1p(counts)'
for c in s.obs.columns:
    assert list(a.obs[c].cat.categories) == list(s.obs[c].cat.categories), c
    assert np.array_equal(a.obs[c].cat.codes.values, s.obs[c].cat.codes.values), c
emb = pd.read_csv(emb_tsv, sep='\t', index_col=0, dtype={'cell_id': str}).astype(np.float32)
assert a.obsm['X_test'].dtype == np.float32 and a.obsm['X_test'].shape == (a.n_obs, 3)
assert np.array_equal(a.obsm['X_test'], emb.loc[a.obs_names].values), 'obsm differs'
prov = a.uns['cellweave_provenance']
prov = [prov[k] for k in sorted(prov)]
assert prov[-1]['tool'] == 'cellweave-export' and prov[0]['tool'] == 'cellweave-import', prov
assert isinstance(prov[0]['params'], dict), prov[0]
assert 'log1p' in a.uns and a.uns['log1p'].get('base') is None, 'no log1p mark on log1p X'
assert a.var_names.is_unique
assert a.uns['cellweave_values'] == 'log1p'
e = ad.read_h5ad(emb_h5ad)
assert e.X is None and e.n_vars == 0 and e.n_obs == a.n_obs
assert np.array_equal(e.obsm['X_test'], emb.values) and list(e.obs_names) == list(emb.index)
import scipy.io
m = scipy.io.mmread(mtx_dir + '/matrix.mtx.gz').tocsr()
assert (m.T != s.X).nnz == 0, 'MTX differs'
feat = pd.read_csv(mtx_dir + '/features.tsv.gz', sep='\t', header=None)
assert list(feat[0]) == list(s.var['gene_ids']) and list(feat[1]) == list(s.var_names)
print('OK')
"#;

#[test]
fn export_round_trips_through_anndata() {
    let Some(sh) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = |n: &str| tmp.path().join(n);
    let src = sh.join("data/kang_ifnb/kang_ifnb.h5ad");
    let full = import(&[s(&src)], &t("full.arrow"));
    let keep: Vec<usize> = (0..full.n_genes()).step_by(3).collect();
    let mut sub = full.select_genes(&keep);
    for v in &mut sub.x.data {
        *v = v.ln_1p();
    }
    sub.values = ValueKind::Log1p;
    table::write_cells(&t("sub.arrow"), &sub).unwrap();
    let n = full.n_cells();
    let order: Vec<usize> = (0..n).rev().collect();
    let emb = EmbeddingTable {
        name: "test".into(),
        cell_ids: order.iter().map(|&i| full.cell_ids[i].clone()).collect(),
        obs: vec![("batch".into(), Column::Cat(full.batch.select(&order)))],
        dim: 3,
        data: (0..n * 3)
            .map(|k| ((k as f32) * 0.37).sin() / 3.0)
            .collect(),
        provenance: vec![],
    };
    table::write_embedding(&t("emb.arrow"), &emb).unwrap();

    run_ok(
        "export",
        &[
            s(&t("sub.arrow")),
            "--counts",
            s(&t("full.arrow")),
            "--embedding",
            s(&t("emb.arrow")),
            "-o",
            s(&t("out.h5ad")),
        ],
    );
    for (input, out) in [
        ("sub.arrow", "sub.tsv"),
        ("emb.arrow", "emb.tsv"),
        ("emb.arrow", "emb.h5ad"),
        ("full.arrow", "mtx"),
    ] {
        run_ok("export", &[s(&t(input)), "-o", s(&t(out))]);
    }

    // cellweave reads its own outputs back exactly.
    let back = import(&[s(&t("out.h5ad")), "--values", "log1p"], &t("back.arrow"));
    assert_eq!(back.x, sub.x);
    assert_eq!(back.gene_ids, sub.gene_ids);
    assert_eq!(back.gene_names, sub.gene_names);
    assert_eq!(back.batch, sub.batch);
    // The export adds scanpy's per-cell QC of the counts; the rest is the table's obs.
    let qc = ["n_genes_by_counts", "total_counts", "pct_counts_mt"];
    let (added, kept): (Vec<_>, Vec<_>) = back
        .obs
        .iter()
        .cloned()
        .partition(|(n, _)| qc.contains(&n.as_str()));
    assert_eq!(kept, sub.obs);
    assert_eq!(added.len(), 3);
    let back_counts = import(
        &[s(&t("out.h5ad")), "--layer", "counts"],
        &t("back_counts.arrow"),
    );
    assert_eq!(back_counts.x, full.select_genes(&keep).x);
    let bm = import(&[s(&t("mtx"))], &t("back_mtx.arrow"));
    assert_eq!(bm.x, full.x);
    assert!(
        (0..n).all(|i| bm.batch.get(i) == full.batch.get(i)),
        "batches from the folder's obs.tsv"
    );
    assert_eq!(bm.gene_names, full.gene_names);

    // And anndata / scipy see the same.
    let Some(py) = python() else { return };
    let out = run_python(
        &py,
        CHECK_H5AD,
        &[
            s(&t("out.h5ad")),
            s(&src),
            s(&t("sub.tsv")),
            s(&t("emb.tsv")),
            s(&t("emb.h5ad")),
            s(&t("mtx")),
        ],
    );
    assert_eq!(out.trim(), "OK");
}
