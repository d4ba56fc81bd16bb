//! cellweave-import on the shared data and on files written by other tools.
//!
//! Every shared data set is imported from its 10x folder and from its `.h5ad` (written by
//! the anndata library); the two cells tables must be identical (cells, genes, every
//! stored value), match the facts of SOURCE.txt (cells, genes, batch sizes, maximum value,
//! integer counts) and, when Python is there, the non-zeros and sum that scipy reads from
//! the same `matrix.mtx.gz`. Other formats (10x `.h5` written by h5py, CSC and dense
//! `.h5ad` written by anndata, dense CSV both ways round) must give the same table as the
//! `.h5ad`. Several inputs: genes aligned by id (intersection and union), batches from the
//! batch column or from the file names, duplicates refused unless `--make-unique`.

mod io_support;

use cellweave::contract::{CellsTable, Column};
use cellweave::io::formats::dense;
use cellweave::io::table;
use cellweave_tests::{run, run_ok, shared};
use io_support::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The (10x folder, obs file for it, h5ad) of each shared data set; the folder's own
/// obs.tsv is joined automatically when it has one.
fn sources(shared: &Path) -> Vec<(String, PathBuf, Option<PathBuf>, PathBuf)> {
    let d = shared.join("data");
    let mut v = Vec::new();
    for ds in [
        "cellbench_2tech_fullgenes",
        "cellbench_3tech",
        "kang_ifnb",
        "pbmc_ctrl_stim_unlabeled",
    ] {
        v.push((
            ds.to_string(),
            d.join(ds),
            None,
            d.join(ds).join(format!("{ds}.h5ad")),
        ));
    }
    for part in ["masked", "truth"] {
        let g = d.join("pbmc_g949_impute");
        v.push((
            format!("pbmc_g949_impute/{part}"),
            g.join(part),
            Some(g.join("obs.tsv")),
            g.join(format!("{part}.h5ad")),
        ));
    }
    v
}

fn text_or_empty(c: &Column, i: usize) -> String {
    match c.text(i) {
        Some(s) if s != "NA" => s,
        _ => String::new(),
    }
}

#[test]
fn shared_datasets_import_identically_from_mtx_and_h5ad() {
    let Some(sh) = shared() else { return };
    let py = python();
    let tmp = tempfile::tempdir().unwrap();
    for (name, dir, obs, h5ad) in sources(&sh) {
        let a = tmp
            .path()
            .join(format!("{}.mtx.arrow", name.replace('/', "_")));
        let b = tmp
            .path()
            .join(format!("{}.h5ad.arrow", name.replace('/', "_")));
        let mut args = vec![s(&dir)];
        if let Some(o) = &obs {
            args.extend(["--obs", s(o)]);
        }
        let (ta, tb) = (import(&args, &a), import(&[s(&h5ad)], &b));
        // The two readers agree on everything the matrix holds.
        assert_eq!(ta.cell_ids, tb.cell_ids, "{name}: cell ids");
        assert_eq!(ta.gene_ids, tb.gene_ids, "{name}: gene ids");
        assert_eq!(ta.gene_names, tb.gene_names, "{name}: gene names");
        assert_eq!(ta.x, tb.x, "{name}: expression matrices differ");
        assert_eq!(batch_sizes(&ta), batch_sizes(&tb), "{name}: batches");
        // Per-cell labels agree (the TSV's NA / empty = missing; the h5ad keeps them as text).
        for (col, c) in &tb.obs {
            let ca = ta
                .obs
                .iter()
                .find(|(n, _)| n == col)
                .unwrap_or_else(|| panic!("{name}: no column {col} from the MTX folder"));
            for i in 0..ta.n_cells() {
                assert_eq!(
                    text_or_empty(&ca.1, i),
                    text_or_empty(c, i),
                    "{name}: column {col}, cell {i}"
                );
            }
        }
        // Facts recorded when the data were staged.
        let f = facts(if obs.is_some() {
            dir.parent().unwrap()
        } else {
            dir.as_path()
        });
        assert_eq!(ta.n_genes().to_string(), f["n_genes"], "{name}: genes");
        assert_eq!(ta.n_cells().to_string(), f["n_cells"], "{name}: cells");
        if let Some(b) = f.get("batches") {
            assert_eq!(batch_sizes(&ta), sizes(b), "{name}: batch sizes");
        }
        if name.ends_with("truth") {
            assert_eq!(ta.x.nnz(), 619_004, "{name}: non-zeros of the ground truth");
        }
        if let Some(m) = f.get("max_value") {
            let max = ta.x.data.iter().fold(0f32, |a, &b| a.max(b));
            assert_eq!(max.to_string(), *m, "{name}: max value");
        }
        if f.get("values_all_integer").map(String::as_str) == Some("TRUE") {
            assert!(
                ta.x.data.iter().all(|v| v.fract() == 0.0),
                "{name}: integer counts"
            );
        }
        // An independent reader: scipy on the same matrix.mtx.gz.
        if let Some(py) = &py {
            let out = run_python(
                py,
                "import sys, scipy.io, numpy as np\nm = scipy.io.mmread(sys.argv[1]).tocsr()\nm.sum_duplicates(); m.eliminate_zeros()\nprint(m.shape[0], m.shape[1], m.nnz, int(m.sum()))",
                &[s(&dir.join("matrix.mtx.gz"))],
            );
            let total: f64 = ta.x.data.iter().map(|&v| v as f64).sum();
            let mine = format!(
                "{} {} {} {}",
                ta.n_genes(),
                ta.n_cells(),
                ta.x.nnz(),
                total as u64
            );
            assert_eq!(
                out.trim(),
                mine,
                "{name}: scipy's genes cells nnz sum vs ours"
            );
        }
        eprintln!(
            "{name}: {} cells x {} genes, {} non-zeros: MTX = h5ad",
            ta.n_cells(),
            ta.n_genes(),
            ta.x.nnz()
        );
    }
}

#[test]
fn layer_and_raw_selection() {
    let Some(sh) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let h5ad = sh.join("data/kang_ifnb/kang_ifnb.h5ad");
    let (a, b) = (tmp.path().join("x.arrow"), tmp.path().join("counts.arrow"));
    let ta = import(&[s(&h5ad)], &a);
    let tb = import(&[s(&h5ad), "--layer", "counts"], &b);
    assert_eq!(ta.x, tb.x);
    assert_eq!(tb.provenance.last().unwrap().params["layer"], "counts");
}

fn same_matrix(a: &CellsTable, b: &CellsTable, what: &str) {
    assert_eq!(a.cell_ids, b.cell_ids, "{what}: cells");
    assert_eq!(a.gene_ids, b.gene_ids, "{what}: gene ids");
    assert_eq!(a.x, b.x, "{what}: matrix");
}

#[test]
fn other_formats_give_the_same_table() {
    let Some(sh) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = |n: &str| tmp.path().join(n);
    let h5ad = sh.join("data/kang_ifnb/kang_ifnb.h5ad");
    let reference = import(&[s(&h5ad)], &t("ref.arrow"));

    // Dense CSV, cells as rows (written by export) and genes as rows (written here, R style).
    run_ok("export", &[s(&t("ref.arrow")), "-o", s(&t("dense.tsv"))]);
    let dense_tsv = import(&[s(&t("dense.tsv")), "--batch", "kang"], &t("dense.arrow"));
    same_matrix(&reference, &dense_tsv, "dense TSV");
    let tr = dense::transpose(&reference.x);
    let mut csv = String::new();
    csv.push_str(
        &reference
            .cell_ids
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(","),
    );
    csv.push('\n');
    for g in 0..reference.n_genes() {
        csv.push_str(&format!("\"{}\"", reference.gene_ids[g]));
        let (idx, val) = tr.row(g);
        let mut k = 0;
        for c in 0..reference.n_cells() {
            if k < idx.len() && idx[k] as usize == c {
                csv.push_str(&format!(",{}", val[k]));
                k += 1;
            } else {
                csv.push_str(",0");
            }
        }
        csv.push('\n');
    }
    std::fs::write(t("genes_rows.csv"), csv).unwrap();
    let gr = import(
        &[s(&t("genes_rows.csv")), "--genes-as-rows"],
        &t("gr.arrow"),
    );
    same_matrix(&reference, &gr, "dense CSV, genes as rows");

    // Files written by h5py / anndata: 10x HDF5 (CellRanger 3 layout, fixed-length strings),
    // CSC and dense X, and obs columns of every kind.
    let Some(py) = python() else { return };
    let script = r#"
import sys, h5py, numpy as np, anndata as ad, pandas as pd, scipy.sparse as sp
src, out = sys.argv[1], sys.argv[2]
a = ad.read_h5ad(src)
X = sp.csr_matrix(a.X)
m = X.T.tocsc()  # genes x cells, stored by column = by cell
def matrix(f, group, data, index, shape):
    """The 10x matrix group `group` of `f`: barcodes, then m's CSC arrays with these dtypes."""
    g = f.create_group(group)
    g['barcodes'] = np.array(a.obs_names, dtype='S')
    g['data'] = m.data.astype(data)
    g['indices'] = m.indices.astype(index)
    g['indptr'] = m.indptr.astype(index)
    g['shape'] = np.array(m.shape, dtype=shape)
    return g
with h5py.File(out + '/tenx.h5', 'w') as f:
    g = matrix(f, 'matrix', np.int32, np.int64, np.int32)
    fg = g.create_group('features')
    fg['id'] = np.array(a.var['gene_ids'], dtype='S')
    fg['name'] = np.array(a.var_names, dtype='S')
    fg['feature_type'] = np.array(['Gene Expression'] * a.n_vars, dtype='S')
with h5py.File(out + '/tenx_v2.h5', 'w') as f:
    g = matrix(f, 'GRCh38', np.float32, np.int32, np.int64)
    g['genes'] = np.array(a.var['gene_ids'], dtype='S')
    g['gene_names'] = np.array(a.var_names, dtype='S')
b = a.copy(); b.X = sp.csc_matrix(b.X); del b.layers['counts']
n = b.n_obs
b.obs['n_umi'] = np.asarray(X.sum(1)).ravel().astype(np.int64)
b.obs['frac'] = np.linspace(0, 1, n)
b.obs['flag'] = np.arange(n) % 2 == 0
b.obs['label'] = ['L%d' % (i % 3) for i in range(n)]
b.obs['nint'] = pd.array([None if i % 5 == 0 else i for i in range(n)], dtype='Int64')
b.obs['label'] = b.obs['label'].astype(object)
b.write_h5ad(out + '/csc.h5ad')
c = a.copy(); c.X = X.toarray(); del c.layers['counts']
c.write_h5ad(out + '/dense.h5ad')
"#;
    run_python(&py, script, &[s(&h5ad), s(tmp.path())]);
    let tenx = import(&[s(&t("tenx.h5")), "--batch", "k"], &t("tenx.arrow"));
    same_matrix(&reference, &tenx, "10x .h5");
    assert_eq!(tenx.gene_names, reference.gene_names);
    let tenx2 = import(&[s(&t("tenx_v2.h5")), "--batch", "k"], &t("tenx2.arrow"));
    same_matrix(&reference, &tenx2, "10x .h5, CellRanger 2 layout");
    assert_eq!(tenx2.gene_names, reference.gene_names);
    let csc = import(&[s(&t("csc.h5ad"))], &t("csc.arrow"));
    same_matrix(&reference, &csc, "CSC .h5ad");
    let col = |n: &str| {
        csc.obs
            .iter()
            .find(|(m, _)| m == n)
            .unwrap_or_else(|| panic!("no column {n}"))
            .1
            .clone()
    };
    let sums: Vec<Option<i64>> = (0..csc.n_cells())
        .map(|r| Some(csc.x.row(r).1.iter().sum::<f32>() as i64))
        .collect();
    assert_eq!(col("n_umi"), Column::I64(sums));
    assert!(matches!(col("frac"), Column::F64(v) if v[0] == 0.0 && v[v.len() - 1] == 1.0));
    assert!(matches!(col("flag"), Column::Bool(v) if v[0] == Some(true) && v[1] == Some(false)));
    // anndata turns string columns into categoricals when writing.
    assert_eq!(col("label").text(4).as_deref(), Some("L1"));
    assert!(matches!(col("nint"), Column::I64(v) if v[0].is_none() && v[1] == Some(1)));
    let dense_h5ad = import(&[s(&t("dense.h5ad"))], &t("dense_h5ad.arrow"));
    same_matrix(&reference, &dense_h5ad, "dense .h5ad");
}

#[test]
fn several_inputs_align_genes_and_keep_batches() {
    let Some(sh) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = |n: &str| tmp.path().join(n);
    let (k, p) = (
        sh.join("data/kang_ifnb"),
        sh.join("data/pbmc_ctrl_stim_unlabeled"),
    );
    let (tk, tp) = (
        import(&[s(&k)], &t("k.arrow")),
        import(&[s(&p)], &t("p.arrow")),
    );
    let pk: HashSet<&String> = tk.gene_ids.iter().collect();
    let common: Vec<&String> = tp.gene_ids.iter().filter(|g| pk.contains(g)).collect();
    assert!(!common.is_empty() && common.len() < tk.n_genes());

    let i = import(&[s(&k), s(&p)], &t("i.arrow"));
    assert_eq!(i.n_cells(), tk.n_cells() + tp.n_cells());
    assert_eq!(i.n_genes(), common.len());
    let mut expect = batch_sizes(&tk);
    expect.extend(batch_sizes(&tp));
    assert_eq!(batch_sizes(&i), expect);
    // The sum over the common genes is kept cell by cell.
    let keep: HashSet<&String> = common.iter().copied().collect();
    let row_sum = |t: &CellsTable, r: usize| -> f64 {
        let (idx, val) = t.x.row(r);
        idx.iter()
            .zip(val)
            .filter(|(g, _)| keep.contains(&t.gene_ids[**g as usize]))
            .map(|(_, &v)| v as f64)
            .sum()
    };
    for r in [0, 100, tk.n_cells() - 1] {
        assert_eq!(row_sum(&i, r), row_sum(&tk, r));
    }
    let cond = i
        .obs
        .iter()
        .find(|(n, _)| n == "condition")
        .unwrap()
        .1
        .clone();
    assert_eq!(cond.text(0).as_deref(), Some("ctrl"));
    assert_eq!(
        cond.text(tk.n_cells()),
        None,
        "pbmc cells have no condition column"
    );

    let u = import(&[s(&k), s(&p), "--join", "union"], &t("u.arrow"));
    assert_eq!(u.n_genes(), tk.n_genes() + tp.n_genes() - common.len());
    assert_eq!(u.x.nnz(), tk.x.nnz() + tp.x.nnz());
    let total = |t: &CellsTable| t.x.data.iter().map(|&v| v as f64).sum::<f64>();
    assert_eq!(total(&u), total(&tk) + total(&tp));
    u.x.validate().unwrap();

    // Same cells twice under one name: an error unless --make-unique; named apart with --batch,
    // each copy's ids get its name (anndata's index_unique='-'), --make-unique not needed.
    let out = run("import", &["-q", s(&k), s(&k), "-o", s(&t("dup.arrow"))]);
    assert_fails(
        &out,
        &t("dup.arrow"),
        "kang_ifnb",
        &["1556 duplicate", "--make-unique"],
    );
    let d = import(&[s(&k), s(&k), "--make-unique"], &t("dup.arrow"));
    assert_eq!(d.cell_ids[tk.n_cells()], format!("{}-1", tk.cell_ids[0]));
    let named = [s(&k), s(&k), "--batch", "a", "--batch", "b"];
    let d = import(&named, &t("dup.arrow"));
    assert_eq!(d.n_cells(), 2 * tk.n_cells());
    assert_eq!(d.cell_ids[0], format!("{}-a", tk.cell_ids[0]));
    assert_eq!(d.cell_ids[tk.n_cells()], format!("{}-b", tk.cell_ids[0]));
    assert_eq!(
        batch_sizes(&d),
        [("a".to_string(), 1556), ("b".to_string(), 1556)]
            .into_iter()
            .collect()
    );
    assert!(
        d.obs.iter().any(|(n, _)| n == "batch_orig"),
        "the file's own batch column is kept under another name"
    );

    // No batch information: each input is a batch named after its file.
    let raw = table::read_cells(&t("k.arrow")).unwrap();
    dense::write_dense_tsv(
        &t("donorA.tsv"),
        &raw.select_cells(&(0..10).collect::<Vec<_>>()),
    )
    .unwrap();
    dense::write_dense_tsv(
        &t("donorB.tsv"),
        &raw.select_cells(&(10..25).collect::<Vec<_>>()),
    )
    .unwrap();
    let ab = import(&[s(&t("donorA.tsv")), s(&t("donorB.tsv"))], &t("ab.arrow"));
    assert_eq!(
        batch_sizes(&ab),
        [("donorA".to_string(), 10), ("donorB".to_string(), 15)]
            .into_iter()
            .collect()
    );
}
