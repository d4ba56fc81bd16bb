//! Values are what they claim to be (issue 13): an `.h5ad` whose X is log-normalized (the
//! file scanpy users hold most) is not imported as counts; the one-line error says how many
//! values are not counts and where this file keeps its counts, and following the advice
//! works. `--values log1p` imports such a table for the stages that work from it, and the
//! stages that need counts refuse it. Samples as Cell Ranger brings them: a sample or
//! `outs/` folder is found, named after the sample, and barcodes shared by samples become
//! `<barcode>-<sample>`.

mod io_support;

use cellweave::contract::{Csr, ValueKind};
use cellweave::io::formats::h5ad::{anndata_of, write_h5ad};
use cellweave_tests::{assert_has, run, run_fails_one_line, run_ok, shared};
use io_support::*;

/// log1p(counts / total * 1e4), as `sc.pp.normalize_total(target_sum=1e4); sc.pp.log1p`.
fn log_normalized(x: &Csr) -> Csr {
    let mut m = x.clone();
    for r in 0..m.n_rows() {
        let row = m.row_mut(r);
        let total: f64 = row.iter().map(|&v| v as f64).sum();
        for v in row.iter_mut() {
            *v = ((*v as f64) * 1e4 / total).ln_1p() as f32;
        }
    }
    m
}

fn not_counts(m: &Csr) -> usize {
    m.data
        .iter()
        .filter(|&&v| !(v >= 0.0 && v.fract() == 0.0))
        .count()
}

#[test]
fn log_normalized_h5ad_is_refused_with_advice_that_works() {
    let Some(sh) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = |n: &str| tmp.path().join(n);
    let counts = import(
        &[s(&sh.join("data/kang_ifnb/kang_ifnb.h5ad"))],
        &t("counts.arrow"),
    );
    let logx = log_normalized(&counts.x);
    let bad = not_counts(&logx);
    assert!(bad > 100_000, "{bad}");

    // X log-normalized, the counts in layers['counts'].
    let mut logged = counts.clone();
    logged.x = logx.clone();
    logged.values = ValueKind::Log1p;
    let mut a = anndata_of(&logged);
    a.layers.push(("counts".into(), &counts.x));
    write_h5ad(&t("with_layer.h5ad"), &a).unwrap();
    let out = t("a.arrow");
    let err = run_fails_one_line(
        "import",
        &["-q", s(&t("with_layer.h5ad")), "-o", s(&out)],
        &out,
    );
    for needle in [
        format!("{bad} of the").as_str(),
        "not counts",
        "layers['counts']",
        "use --layer counts",
        "with_layer.h5ad",
    ] {
        assert!(err.contains(needle), "no '{needle}' in: {err}");
    }
    // Following it gives the counts back.
    let back = import(
        &[s(&t("with_layer.h5ad")), "--layer", "counts"],
        &t("b.arrow"),
    );
    assert_eq!(back.x, counts.x);
    assert_eq!(back.values, ValueKind::Counts);

    // X log-normalized and no counts anywhere: the error says to declare the values.
    write_h5ad(&t("log_only.h5ad"), &anndata_of(&logged)).unwrap();
    let err = run_fails_one_line(
        "import",
        &["-q", s(&t("log_only.h5ad")), "-o", s(&out)],
        &out,
    );
    assert_has(&err, &[&format!("{bad} of the"), "--values log1p"]);
    assert!(err.contains("holds no counts"), "{err}");
    let declared = import(
        &[s(&t("log_only.h5ad")), "--values", "log1p"],
        &t("log.arrow"),
    );
    assert_eq!(declared.values, ValueKind::Log1p);
    assert_eq!(declared.x, logx);

    // The stages that need counts refuse the declared table; hvg works from it.
    for tool in ["normalize", "filter"] {
        let o = t(&format!("{tool}.arrow"));
        let err = run_fails_one_line(tool, &["-q", s(&t("log.arrow")), "-o", s(&o)], &o);
        assert!(
            err.contains("'log1p'") && err.contains("raw counts"),
            "{tool}: {err}"
        );
    }
    run_ok(
        "hvg",
        &[
            s(&t("log.arrow")),
            "--n-top-genes",
            "200",
            "-o",
            s(&t("hvg.arrow")),
        ],
    );
    assert_eq!(read(&t("hvg.arrow")).n_genes(), 200);
}

#[test]
fn counts_in_raw_are_found() {
    let Some(sh) = shared() else { return };
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = sh.join("data/cellbench_3tech/cellbench_3tech.h5ad");
    let dst = tmp.path().join("raw.h5ad");
    // What scanpy users write: counts frozen in .raw, X log-normalized, no layers.
    run_python(
        &py,
        r#"
import sys, anndata as ad, numpy as np, scipy.sparse as sp
a = ad.read_h5ad(sys.argv[1])
a.X = a.layers['counts'].copy() if 'counts' in a.layers else a.X
del a.layers['counts']
a.raw = a.copy()
x = a.X.tocsr().astype(np.float32)
x = sp.diags(1e4 / np.asarray(x.sum(1)).ravel()) @ x
x.data = np.log1p(x.data)
a.X = x.astype(np.float32)
a.write_h5ad(sys.argv[2])
"#,
        &[s(&src), s(&dst)],
    );
    let out = tmp.path().join("a.arrow");
    let err = run_fails_one_line("import", &["-q", s(&dst), "-o", s(&out)], &out);
    assert_has(&err, &["raw/X", "use --layer raw"]);
    let from_raw = import(&[s(&dst), "--layer", "raw"], &out);
    let direct = import(&[s(&src), "--layer", "counts"], &tmp.path().join("d.arrow"));
    assert_eq!(from_raw.x, direct.x);
}

#[test]
fn non_integer_text_matrix_is_refused_unless_declared() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("m.tsv");
    std::fs::write(&p, "cell_id\tG1\tG2\tG3\nc1\t1\t0.5\t2\nc2\t0\t3\t1.25\n").unwrap();
    let out = tmp.path().join("a.arrow");
    let err = run_fails_one_line("import", &["-q", s(&p), "-o", s(&out)], &out);
    assert_has(
        &err,
        &["2 of the 5 stored values are not counts", "--values"],
    );
    let o = run("import", &[s(&p), "--values", "normalized", "-o", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read(&out).values, ValueKind::Normalized);
}

#[test]
fn cellranger_samples_with_shared_barcodes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("sampleA"), tmp.path().join("sampleB"));
    two_cellranger_samples(&a, &b);
    // A sample folder and an outs/ folder are found; batches are the sample folders' names;
    // the barcodes both samples use become <barcode>-<sample> (anndata's index_unique='-').
    let t = import(&[s(&a), s(&b.join("outs"))], &tmp.path().join("ab.arrow"));
    assert_eq!(
        t.cell_ids,
        [
            "AAAC-1-sampleA",
            "AAAG-1-sampleA",
            "AACT-1-sampleA",
            "AAAC-1-sampleB",
            "AAAG-1-sampleB"
        ]
    );
    assert_eq!(t.batch.categories, ["sampleA", "sampleB"]);
    assert_eq!(t.x.nnz(), 5);
    // The matrix folder itself names its batch after the sample too.
    let t = import(
        &[s(&a.join("outs/filtered_feature_bc_matrix"))],
        &tmp.path().join("a.arrow"),
    );
    assert_eq!(t.batch.categories, ["sampleA"]);
    assert_eq!(t.cell_ids, ["AAAC-1", "AAAG-1", "AACT-1"]);
    // --batch names the samples in the ids as well.
    let t = import(
        &[s(&a), s(&b), "--batch", "ctrl", "--batch", "stim"],
        &tmp.path().join("cs.arrow"),
    );
    assert_eq!(t.cell_ids[3], "AAAC-1-stim");
}

/// Every stage that needs counts refuses log-normalized values, and every stage that needs
/// normalized values refuses counts: one line naming the file, the values found and the
/// values expected, and no output.
#[test]
fn each_stage_refuses_the_wrong_kind_of_values() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_string_lossy().to_string();
    simulate_counts(&tmp.path().join("counts.arrow"));
    run_ok(
        "normalize",
        &["-q", &p("counts.arrow"), "-o", &p("log.arrow")],
    );
    run_ok("pairs", &["-q", &p("log.arrow"), "-o", &p("pairs.arrow")]);
    let (counts, log) = (p("counts.arrow"), p("log.arrow"));
    let (pairs, emb) = (p("pairs.arrow"), p("e.arrow"));
    let cases: [(&str, Vec<&str>, &str, [&str; 2]); 8] = [
        (
            "normalize",
            vec![&log],
            "log.arrow",
            ["'log1p'", "expected raw counts"],
        ),
        (
            "filter",
            vec![&log],
            "log.arrow",
            ["'log1p'", "expected raw counts"],
        ),
        (
            "impute",
            vec![&log, "--method", "gene-mean"],
            "log.arrow",
            ["'log1p'", "needs raw counts"],
        ),
        (
            "hvg",
            vec![&counts],
            "counts.arrow",
            ["'counts'", "expected log1p values"],
        ),
        (
            "hvg",
            vec![&log, "--flavor", "seurat_v3"],
            "log.arrow",
            ["'log1p'", "expected raw counts"],
        ),
        (
            "pairs",
            vec![&counts],
            "counts.arrow",
            ["found raw counts", "expected log-normalized"],
        ),
        (
            "score",
            vec![&counts],
            "counts.arrow",
            ["raw counts", "normalized, log1p values"],
        ),
        (
            "train",
            vec![&counts, "--pairs", &pairs, "--embedding", &emb],
            "counts.arrow",
            ["raw counts", "log-normalized values"],
        ),
    ];
    for (tool, args, file, needles) in cases {
        let out = tmp.path().join(format!("{tool}.out.arrow"));
        let mut a = vec!["-q"];
        a.extend(args);
        a.extend(["-o", s(&out)]);
        let err = run_fails_one_line(tool, &a, &out);
        for n in [file, "field '"].iter().chain(&needles) {
            assert!(err.contains(n), "{tool}: no '{n}' in: {err}");
        }
    }
}
