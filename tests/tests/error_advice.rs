//! Every piece of advice an error of import, the preprocessing stages or export gives works
//! when followed (issue 13: "any suggestion an error makes works when followed (test each
//! one)"). Each case: the failing run is one line naming the file (when there is one), the
//! field and the advice; the same run with the advice followed succeeds. Advice tested
//! elsewhere: `--layer counts`, `--layer raw`, `--values log1p|normalized` (io_values),
//! `--make-unique` (io_import, io_samples), `--obs-join position` (io_samples).

mod io_support;

use cellweave::contract::Csr;
use cellweave_tests::{assert_has, run, run_ok};
use io_support::*;
use std::path::Path;

/// A 10x folder with these genes (ids) and cells.
fn tenx(dir: &Path, genes: &[&str], barcodes: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let features: String = genes
        .iter()
        .map(|g| format!("{g}\t{g}\tGene Expression\n"))
        .collect();
    std::fs::write(dir.join("features.tsv"), features).unwrap();
    std::fs::write(dir.join("barcodes.tsv"), barcodes.join("\n") + "\n").unwrap();
    let mut mtx = format!(
        "%%MatrixMarket matrix coordinate integer general\n{} {} {}\n",
        genes.len(),
        barcodes.len(),
        barcodes.len()
    );
    for c in 0..barcodes.len() {
        mtx += &format!("{} {} {}\n", c % genes.len() + 1, c + 1, c + 2);
    }
    std::fs::write(dir.join("matrix.mtx"), mtx).unwrap();
}

/// `TOOL -q ARGS -o OUT` fails with one line naming `file` and saying each of `needles`;
/// then `TOOL -q ARGS FOLLOWED -o OUT` succeeds.
fn advice_works(
    tool: &str,
    args: &[&str],
    followed: &[&str],
    out: &Path,
    file: &str,
    needles: &[&str],
) {
    let mut a = vec!["-q"];
    a.extend_from_slice(args);
    let mut failing = a.clone();
    failing.extend(["-o", s(out)]);
    assert_fails(&run(tool, &failing), out, file, needles);
    a.extend_from_slice(followed);
    a.extend(["-o", s(out)]);
    run_ok(tool, &a);
    assert!(out.exists(), "{tool}: following the advice wrote nothing");
}

/// `TOOL -q ARGS -o OUT` fails saying `needle`; then `TOOL -q ARGS FOLLOWED -o OUT`
/// succeeds.
fn advice_followed(tool: &str, args: &[&str], followed: &[&str], out: &str, needle: &str) {
    let mut a = vec!["-q"];
    a.extend_from_slice(args);
    let mut failing = a.clone();
    failing.extend(["-o", out]);
    let r = run(tool, &failing);
    let err = String::from_utf8_lossy(&r.stderr).to_string();
    assert!(!r.status.success() && err.contains(needle), "{err}");
    a.extend_from_slice(followed);
    a.extend(["-o", out]);
    run_ok(tool, &a);
}

#[test]
fn import_advice_works() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // A square matrix: the orientation is ambiguous, --genes-as-rows for the 10x layout.
    let sq = d.join("square");
    tenx(&sq, &["G1", "G2"], &["c1", "c2"]);
    advice_works(
        "import",
        &[s(&sq)],
        &["--genes-as-rows"],
        &d.join("sq.arrow"),
        "matrix.mtx",
        &["field 'shape'", "--genes-as-rows"],
    );
    let (a, b) = (d.join("a"), d.join("b"));
    tenx(&a, &["G1", "G2", "G3"], &["c1", "c2"]);
    tenx(&b, &["H1", "H2", "H3"], &["c3", "c4"]);
    // No gene in common: --join union.
    advice_works(
        "import",
        &[s(&a), s(&b)],
        &["--join", "union"],
        &d.join("u.arrow"),
        "a",
        &["field 'gene_ids'", "--join union"],
    );
    assert_eq!(read(&d.join("u.arrow")).n_genes(), 6);

    // One --batch name for two inputs: give one per input, or --batch-key.
    let obs = d.join("obs.tsv");
    std::fs::write(&obs, "id\tdonor\nc1\td1\nc2\td2\nc3\td1\nc4\td2\n").unwrap();
    tenx(&b, &["G1", "G2", "G3"], &["c3", "c4"]);
    let one = [s(&a), s(&b), "--obs", s(&obs), "--batch", "x"];
    let err = run(
        "import",
        &[&["-q"][..], &one, &["-o", s(&d.join("x.arrow"))]].concat(),
    );
    let err = String::from_utf8_lossy(&err.stderr).to_string();
    assert_has(
        &err,
        &["field 'batch'", "give one per input, or use --batch-key"],
    );
    run_ok(
        "import",
        &[
            "-q",
            s(&a),
            s(&b),
            "--batch",
            "x",
            "--batch",
            "y",
            "-o",
            s(&d.join("xy.arrow")),
        ],
    );
    assert_eq!(read(&d.join("xy.arrow")).batch.categories, ["x", "y"]);
    run_ok(
        "import",
        &[
            "-q",
            s(&a),
            s(&b),
            "--obs",
            s(&obs),
            "--batch-key",
            "donor",
            "-o",
            s(&d.join("k.arrow")),
        ],
    );
    assert_eq!(read(&d.join("k.arrow")).batch.categories, ["d1", "d2"]);

    // Joined by position but the ids are unique and in another order: --obs-join id.
    std::fs::write(&obs, "id\tk\nc2\t2\nc1\t1\n").unwrap();
    let o = d.join("id.arrow");
    let by = |how: &str| {
        run(
            "import",
            &[
                "-q",
                s(&a),
                "--obs",
                s(&obs),
                "--obs-join",
                how,
                "-o",
                s(&o),
            ],
        )
    };
    assert_fails(
        &by("position"),
        &o,
        "obs.tsv",
        &["field 'cell_id'", "--obs-join id"],
    );
    assert!(by("id").status.success());
    assert_eq!(read(&o).column("k").unwrap().text(0).as_deref(), Some("1"));
}

#[test]
fn unused_batch_categories_advice_works() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("unused.h5ad");
    write_unused_batch_h5ad(&p);
    let out = tmp.path().join("o.arrow");
    let r = run("import", &["-q", s(&p), "-o", s(&out)]);
    assert_fails(
        &r,
        &out,
        "unused.h5ad",
        &["field 'batch'", "remove_unused_categories()"],
    );
    // What the error says, in Python.
    run_python(
        &py,
        "import sys, anndata as ad\na = ad.read_h5ad(sys.argv[1])\na.obs['batch'] = a.obs['batch'].cat.remove_unused_categories()\na.write_h5ad(sys.argv[1])",
        &[s(&p)],
    );
    assert_eq!(import(&[s(&p)], &out).batch.categories, ["s1"]);
}

#[test]
fn preprocessing_and_export_advice_works() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_string_lossy().to_string();
    simulate_counts(&tmp.path().join("counts.arrow"));
    let out = |n: &str| tmp.path().join(n);
    // pairs on counts: run cellweave-normalize first.
    let o = out("pairs.arrow");
    assert_fails(
        &run("pairs", &["-q", &p("counts.arrow"), "-o", s(&o)]),
        &o,
        "counts.arrow",
        &["run cellweave-normalize first"],
    );
    run_ok(
        "normalize",
        &["-q", &p("counts.arrow"), "-o", &p("log.arrow")],
    );
    run_ok("pairs", &["-q", &p("log.arrow"), "-o", s(&o)]);
    // hvg seurat_v3 on log values: give the counts with --counts.
    advice_works(
        "hvg",
        &[
            &p("log.arrow"),
            "--flavor",
            "seurat_v3",
            "--n-top-genes",
            "50",
        ],
        &["--counts", &p("counts.arrow")],
        &out("v3.arrow"),
        "log.arrow",
        &["--counts RAW.arrow"],
    );
    // hvg --no-subset without --genes-out.
    let g = p("genes.arrow");
    advice_followed(
        "hvg",
        &[&p("log.arrow"), "--no-subset"],
        &["--genes-out", &g],
        s(&out("all.arrow")),
        "give --genes-out",
    );

    // export --neighbors-of without embeddings: add --embedding.
    let mut emb = cellweave::io::table::read_cells(&out("log.arrow")).unwrap();
    emb.x = Csr::from_dense(emb.n_cells(), 1, &vec![0.0; emb.n_cells()]);
    let e = out("claire.arrow");
    cellweave_tests::write_plain_embedding(
        &e,
        "claire",
        emb.cell_ids.clone(),
        2,
        (0..2 * emb.n_cells()).map(|i| (i % 7) as f32).collect(),
    );
    advice_followed(
        "export",
        &[&p("log.arrow"), "--neighbors-of", "claire"],
        &["--embedding", s(&e)],
        &p("n.h5ad"),
        "add --embedding",
    );
    // An embedding named X_pca beside the export's PCA: give --n-pcs 0.
    let pca = out("X_pca.arrow");
    cellweave_tests::write_plain_embedding(
        &pca,
        "X_pca",
        emb.cell_ids.clone(),
        2,
        vec![0.5; 2 * emb.n_cells()],
    );
    advice_followed(
        "export",
        &[&p("log.arrow"), "--hvg", &g, "--embedding", s(&pca)],
        &["--n-pcs", "0"],
        &p("p.h5ad"),
        "--n-pcs 0",
    );
}
