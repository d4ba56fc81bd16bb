//! The PCA in an exported `.h5ad` (issue 13): `cellweave-export NORM --hvg GENES` writes
//! `obsm['X_pca']`, `varm['PCs']` and `uns['pca']` as scanpy's `sc.pp.pca(adata)` (1.11
//! defaults: 50 components of the highly variable genes, centred, not scaled) writes them.
//! Checked on the shared data against scanpy run on the exported object itself and against
//! the reference embedding `reference/<dataset>/embed/pca.tsv` (scanpy on its own
//! preprocessing): every component equal up to its sign (relative tolerance 2e-5 for the
//! first 10 components, 1e-3 for all 50), the variances to 1e-4.

mod io_support;

use cellweave_tests::{run_ok, shared};
use io_support::*;

const CHECK: &str = r#"
import sys, json, numpy as np, pandas as pd, scanpy as sc
out, ref_tsv = sys.argv[1:3]
a = sc.read_h5ad(out)
hv = a.var['highly_variable'].values.astype(bool)
pcs = np.asarray(a.varm['PCs'], dtype=np.float64)
r = {'k': int(a.obsm['X_pca'].shape[1]), 'n_hvg': int(hv.sum()),
     'pcs_zero_elsewhere': bool(np.all(pcs[~hv] == 0)), 'pcs_shape': list(pcs.shape),
     'dtype': str(a.obsm['X_pca'].dtype)}
b = a.copy()
del b.obsm['X_pca'], b.varm['PCs'], b.uns['pca']
sc.pp.pca(b)
r['params_equal'] = {k: v for k, v in a.uns['pca']['params'].items()} == dict(b.uns['pca']['params'])
def rel(x, y):
    # per component: max |x - s y| / max |y|, s the sign that aligns them
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    s = np.sign((x * y).sum(0)); s[s == 0] = 1
    return (np.abs(x * s - y).max(0) / np.abs(y).max(0)).tolist()
r['scores_vs_scanpy'] = rel(a.obsm['X_pca'], b.obsm['X_pca'])
r['pcs_vs_scanpy'] = rel(pcs[hv], b.varm['PCs'][hv])
for key in ['variance', 'variance_ratio']:
    x, y = np.asarray(a.uns['pca'][key]), np.asarray(b.uns['pca'][key])
    r[key + '_vs_scanpy'] = float(np.abs(x / y - 1).max())
ref = pd.read_csv(ref_tsv, sep='\t', index_col=0)
r['scores_vs_reference'] = rel(a.obsm['X_pca'], ref.loc[a.obs_names].values)
print(json.dumps(r))
"#;

fn worst(v: &serde_json::Value, n: usize) -> f64 {
    v.as_array().unwrap()[..n]
        .iter()
        .map(|x| x.as_f64().unwrap())
        .fold(0.0, f64::max)
}

#[test]
fn exported_pca_is_scanpys() {
    let Some(sh) = shared() else { return };
    let Some(py) = cellweave_tests::reference_python(&["scanpy", "anndata", "pandas"]) else {
        return;
    };
    for ds in ["cellbench_3tech", "kang_ifnb", "cellbench_2tech_fullgenes"] {
        let tmp = tempfile::tempdir().unwrap();
        let p = |n: &str| tmp.path().join(n).to_string_lossy().to_string();
        let h5ad = sh.join(format!("data/{ds}/{ds}.h5ad"));
        run_ok("import", &["-q", s(&h5ad), "-o", &p("raw.arrow")]);
        run_ok("filter", &["-q", &p("raw.arrow"), "-o", &p("f.arrow")]);
        run_ok("normalize", &["-q", &p("f.arrow"), "-o", &p("n.arrow")]);
        run_ok(
            "hvg",
            &[
                "-q",
                &p("n.arrow"),
                "-o",
                &p("h.arrow"),
                "--genes-out",
                &p("genes.arrow"),
            ],
        );
        run_ok(
            "export",
            &[
                "-q",
                &p("n.arrow"),
                "--counts",
                &p("f.arrow"),
                "--hvg",
                &p("genes.arrow"),
                "-o",
                &p("out.h5ad"),
            ],
        );
        let reference = sh.join(format!("reference/{ds}/embed/pca.tsv"));
        let out = run_python(&py, CHECK, &[&p("out.h5ad"), s(&reference)]);
        let r: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        assert_eq!(r["k"], 50, "{ds}: {r}");
        assert_eq!(r["dtype"], "float32", "{ds}");
        assert_eq!(r["pcs_zero_elsewhere"], true, "{ds}");
        assert_eq!(r["params_equal"], true, "{ds}");
        // Per component, the largest difference relative to the component's largest value,
        // after aligning signs: measured at most 6e-6 over the first 10 components and
        // 6e-4 over all 50 (float32 data; later components have closer variances).
        for key in ["scores_vs_scanpy", "pcs_vs_scanpy", "scores_vs_reference"] {
            for (n, t) in [(10, 2e-5), (50, 1e-3)] {
                let w = worst(&r[key], n);
                assert!(
                    w < t,
                    "{ds}: {key} {w:.2e} over the first {n} PCs (tolerance {t:.0e}): {r}"
                );
            }
        }
        for key in ["variance_vs_scanpy", "variance_ratio_vs_scanpy"] {
            let w = r[key].as_f64().unwrap();
            assert!(w < 1e-4, "{ds}: {key} {w:.2e}: {r}");
        }
    }
}
