//! scanpy itself as the oracle, on simulated data written to `.h5ad` by cellweave-export:
//! every HVG flavor, with and without a batch key, against scanpy 1.11 run on the same file.
//!
//! The selection must agree exactly; means, dispersions, normalized dispersions (and for
//! `seurat_v3`, which needs scikit-misc, variances) within 1e-5 relative: scanpy's float32
//! sums follow the host CPU's SIMD width, so their last bit varies between machines (on one
//! machine every value was bit-identical, on another a third were; the count is printed).
//! `seurat_v3` normalized variances within 1e-9 relative (the loess is solved differently, see
//! hvg/loess.rs), and the selection, median ranks and batch counts exactly equal to scanpy's
//! procedure with one change: genes tied in a batch's normalized variance are ranked by
//! position. scanpy ranks with numpy's default (unstable, CPU-dependent) argsort, and ties are
//! common (genes with one count in a batch all share a value); how many genes scanpy itself
//! selects differently is printed.
//!
//! Python: the reference stack ([`cellweave_tests::reference_python`]). Without it the test
//! prints a loud notice and checks nothing (and fails under `CI=true`).

use cellweave_tests::run_ok;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const ORACLE: &str = r#"
import sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, scipy.sparse as sp, anndata as ad, scanpy as sc
h5ad, out = sys.argv[1], sys.argv[2]
a = ad.read_h5ad(h5ad)
X = a.layers["counts"] if "counts" in a.layers else a.X
a = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32), obs=a.obs[["batch"]].copy(), var=a.var[[]].copy())
a.obs["batch"] = a.obs["batch"].astype(str).astype("category")
sc.pp.filter_genes(a, min_cells=3)
counts = a.copy()
sc.pp.normalize_total(a, target_sum=1e4)
sc.pp.log1p(a)
def dump(name, df, cols):
    with open(f"{out}/{name}.tsv", "w") as f:
        f.write("\t".join(cols) + "\n")
        for i in range(len(df)):
            f.write("\t".join(repr(float(df[c].iloc[i])) for c in cols) + "\n")
for flavor in ["seurat", "cell_ranger"]:
    for bk in ["batch", None]:
        df = sc.pp.highly_variable_genes(a, flavor=flavor, n_top_genes=200, batch_key=bk, inplace=False)
        dump(f"{flavor}_{bk}", df, ["means", "dispersions", "dispersions_norm", "highly_variable"])
try:
    from skmisc.loess import loess
except ImportError:
    print("no skmisc", file=sys.stderr)
    sys.exit(0)
from scanpy.preprocessing._utils import _get_mean_var
from scanpy.preprocessing._highly_variable_genes import _sum_and_sum_squares_clipped
import pandas as pd
for bk in ["batch", None]:
    df = sc.pp.highly_variable_genes(counts, flavor="seurat_v3", n_top_genes=200, batch_key=bk, inplace=False)
    # scanpy's steps again, with one change: ties in a batch's normalized variance are
    # ranked by gene position (numpy's default argsort is not stable)
    data = counts.X
    bi = counts.obs[bk].to_numpy() if bk else np.zeros(data.shape[0], dtype=int)
    nvs = []
    for b in np.unique(bi):
        db = data[bi == b]
        mean, var = _get_mean_var(db)
        nc = var > 0
        est = np.zeros(data.shape[1])
        m = loess(np.log10(mean[nc]), np.log10(var[nc]), span=0.3, degree=2)
        m.fit()
        est[nc] = m.outputs.fitted_values
        rs = np.sqrt(10 ** est)
        n = db.shape[0]
        sq, s = _sum_and_sum_squares_clipped(db.indices, db.data, n_cols=db.shape[1], clip_val=rs * np.sqrt(n) + mean, nnz=db.nnz)
        nvs.append((1 / ((n - 1) * rs ** 2)) * (n * mean ** 2 + sq - 2 * s * mean))
    nv = np.array(nvs)
    r = np.argsort(np.argsort(-nv, axis=1, kind="stable"), axis=1).astype(np.float32)
    nb = (r < 200).sum(0)
    r[r >= 200] = np.nan
    med = np.ma.median(np.ma.masked_invalid(r), axis=0).filled(np.nan)
    st = pd.DataFrame({"rank": med, "nb": nb})
    order = st.sort_values(["rank", "nb"], ascending=[True, False], na_position="last").index
    hv = np.zeros(len(st), dtype=bool)
    hv[order[:200]] = True
    df["highly_variable_stable"] = hv
    df["highly_variable_rank_stable"] = med
    df["highly_variable_nbatches"] = nb
    df["variances_norm_check"] = nv.mean(0)
    dump(f"seurat_v3_{bk}", df, ["means", "variances", "variances_norm", "highly_variable", "highly_variable_stable",
                                 "highly_variable_rank_stable", "highly_variable_nbatches"])
"#;

fn read_tsv(p: &Path) -> HashMap<String, Vec<f64>> {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap()
        .split('\t')
        .map(str::to_string)
        .collect();
    let mut cols: HashMap<String, Vec<f64>> = head.iter().map(|h| (h.clone(), vec![])).collect();
    for l in lines {
        for (h, v) in head.iter().zip(l.split('\t')) {
            if h == "gene_id" || h == "gene_name" {
                continue;
            }
            let x = match v {
                "NA" | "nan" => f64::NAN,
                "true" => 1.0,
                "false" => 0.0,
                _ => v
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: not a number: {v}", p.display())),
            };
            cols.get_mut(h).unwrap().push(x);
        }
    }
    cols
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn hvg_flavors_match_scanpy() {
    let Some(py) = cellweave_tests::reference_python(&["scanpy", "anndata"]) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).to_string_lossy().to_string();
    run_ok(
        "simulate",
        &[
            "-o",
            &p("sim.arrow"),
            "--cells",
            "1800",
            "--genes",
            "700",
            "--batches",
            "3",
            "--cell-types",
            "5",
            "--density",
            "0.08",
            "--seed",
            "3",
            "-q",
        ],
    );
    run_ok("export", &[&p("sim.arrow"), "-o", &p("sim.h5ad")]);
    std::fs::write(p("oracle.py"), ORACLE).unwrap();
    let out = Command::new(&py)
        .args([p("oracle.py"), p("sim.h5ad"), p("")])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let has_v3 = !String::from_utf8_lossy(&out.stderr).contains("no skmisc");
    run_ok("filter", &[&p("sim.arrow"), "-o", &p("f.arrow")]);
    run_ok("normalize", &[&p("f.arrow"), "-o", &p("n.arrow")]);
    let mut checked = 0;
    for flavor in ["seurat", "cell_ranger", "seurat_v3"] {
        if flavor == "seurat_v3" && !has_v3 {
            let what = format!(
                "scikit-misc (seurat_v3) is not installed in {}",
                py.display()
            );
            cellweave_tests::missing::<()>(&what);
            continue;
        }
        for bk in ["batch", "None"] {
            let input = if flavor == "seurat_v3" {
                p("f.arrow")
            } else {
                p("n.arrow")
            };
            let genes = p(&format!("{flavor}_{bk}.cw.tsv"));
            let h = p("h.arrow");
            let mut args = vec![
                input.as_str(),
                "-o",
                &h,
                "--flavor",
                flavor,
                "--n-top-genes",
                "200",
                "--genes-out",
                &genes,
                "-q",
            ];
            if bk == "None" {
                args.push("--ignore-batch");
            }
            run_ok("hvg", &args);
            let mine = read_tsv(Path::new(&genes));
            let theirs = read_tsv(Path::new(&p(&format!("{flavor}_{bk}.tsv"))));
            let cols: &[(&str, &str)] = if flavor == "seurat_v3" {
                &[
                    ("means", "means"),
                    ("variances", "variances"),
                    ("variances_norm", "variances_norm"),
                    ("highly_variable", "highly_variable_stable"),
                    ("highly_variable_rank", "highly_variable_rank_stable"),
                    ("highly_variable_nbatches", "highly_variable_nbatches"),
                ]
            } else {
                &[
                    ("means", "means"),
                    ("dispersions", "dispersions"),
                    ("dispersions_norm", "dispersions_norm"),
                    ("highly_variable", "highly_variable"),
                ]
            };
            if flavor == "seurat_v3" {
                let differ = (0..mine["highly_variable"].len())
                    .filter(|&g| mine["highly_variable"][g] != theirs["highly_variable"][g])
                    .count();
                eprintln!("seurat_v3 batch_key={bk}: {differ} genes selected differently from scanpy's unstable argsort (ties)");
            }
            let (mut bitwise, mut compared) = (0, 0);
            for (c, oracle) in cols {
                let (a, b) = (&mine[*c], &theirs[*oracle]);
                assert_eq!(a.len(), b.len(), "{flavor} {bk} {c}: gene count");
                for g in 0..a.len() {
                    // Selections exactly; statistics within 1e-5 (relative above 1, as the issue asks): scanpy sums float32
                    // values in an order that depends on the CPU's SIMD width (numpy's pairwise
                    // summation, numba), so the last float32 bit can differ from machine to
                    // machine (seen: 2.6150402983774073 vs 2.615040313490971). How many agree
                    // bit for bit is printed.
                    let ok = if c.starts_with("highly_variable") {
                        same(a[g], b[g])
                    } else if flavor == "seurat_v3" && *c == "variances_norm" {
                        (a[g] - b[g]).abs() <= 1e-9 * b[g].abs().max(1e-12)
                    } else {
                        same(a[g], b[g]) || (a[g] - b[g]).abs() <= 1e-5 * b[g].abs().max(1.0)
                    };
                    bitwise += usize::from(same(a[g], b[g]));
                    compared += 1;
                    assert!(
                        ok,
                        "{flavor} batch_key={bk} {c} of gene {g}: cellweave {} vs scanpy {}",
                        a[g], b[g]
                    );
                }
            }
            eprintln!(
                "{flavor} batch_key={bk}: {bitwise} of {compared} values bit-identical to scanpy's"
            );
            checked += 1;
        }
    }
    eprintln!("{checked} flavor/batch-key combinations equal to scanpy");
}
