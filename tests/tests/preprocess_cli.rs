//! The preprocessing binaries as a workflow calls them: simulate -> filter -> normalize ->
//! hvg on simulated data, provenance, determinism, and bad input (one-line error naming
//! file and field, non-zero exit, no output).

use cellweave::contract::{Column, TableKind, ValueKind};
use cellweave::io::table;
use cellweave_tests::{run, run_ok};
use std::path::{Path, PathBuf};

fn s(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

fn simulate(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        "-o",
        out.to_str().unwrap(),
        "--cells",
        "1500",
        "--genes",
        "400",
        "--batches",
        "3",
        "--cell-types",
        "4",
        "--density",
        "0.1",
        "-q",
    ];
    args.extend_from_slice(extra);
    run_ok("simulate", &args);
    out
}

/// Assert a failure: exit status 1, one error line naming `what`, and no `output`.
fn fails(tool: &str, args: &[&str], output: &Path, what: &[&str]) {
    let out = run(tool, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "cellweave-{tool} {args:?} should fail; stderr: {err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {err}");
    for w in what {
        assert!(
            errors[0].contains(w),
            "error line should mention {w:?}: {}",
            errors[0]
        );
    }
    assert!(
        !output.exists(),
        "{} must not exist after a failure",
        output.display()
    );
}

#[test]
fn simulate_is_deterministic() {
    let d = tempfile::tempdir().unwrap();
    let a = simulate(
        d.path(),
        "a.arrow",
        &["--seed", "5", "--chunk-cells", "300"],
    );
    let b = simulate(d.path(), "b.arrow", &["--seed", "5"]);
    let c = simulate(d.path(), "c.arrow", &["--seed", "6"]);
    let (ta, tb, tc) = (
        table::read_cells(&a).unwrap(),
        table::read_cells(&b).unwrap(),
        table::read_cells(&c).unwrap(),
    );
    assert_eq!(ta.x, tb.x, "same seed, other chunking: same cells");
    assert_eq!(ta.cell_ids, tb.cell_ids);
    assert_ne!(ta.x, tc.x);
    assert_eq!(ta.values, ValueKind::Counts);
    assert_eq!(ta.n_cells(), 1500);
    assert_eq!(ta.batch.categories, vec!["b0", "b1", "b2"]);
    assert!(matches!(ta.column("cell_type"), Some(Column::Cat(_))));
    let dens = ta.x.nnz() as f64 / (1500.0 * 400.0);
    assert!((dens - 0.1).abs() < 0.02, "density {dens}");
    fails(
        "simulate",
        &["-o", &s(&d.path().join("bad.arrow")), "--density", "2"],
        &d.path().join("bad.arrow"),
        &["--density"],
    );
}

#[test]
fn pipeline_on_simulated_data() {
    let d = tempfile::tempdir().unwrap();
    let raw = simulate(d.path(), "raw.arrow", &["--seed", "1"]);
    let p = |n: &str| s(&d.path().join(n));
    let out = run_ok(
        "filter",
        &[
            &s(&raw),
            "-o",
            &p("f.arrow"),
            "--min-genes",
            "30",
            "--max-mito-pct",
            "20",
            "--qc-report",
            &p("qc.tsv"),
            "--genes-out",
            &p("fgenes.arrow"),
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("no gene name starts with 'MT-'"),
        "warning about the missing mito genes: {log}"
    );
    let f = table::read_cells(Path::new(&p("f.arrow"))).unwrap();
    let qc = std::fs::read_to_string(p("qc.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = qc.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(
        rows[0][..4],
        ["batch", "cells_in", "cells_out", "cells_removed"]
    );
    assert_eq!(
        rows.iter().skip(1).map(|r| r[0]).collect::<Vec<_>>(),
        vec!["b0", "b1", "b2", "all"]
    );
    let all = &rows[4];
    assert_eq!(all[1], "1500");
    assert_eq!(all[2].parse::<usize>().unwrap(), f.n_cells());
    let removed_min_genes: usize = all[4].parse().unwrap();
    assert_eq!(
        1500 - f.n_cells(),
        removed_min_genes,
        "only the min-genes filter removes cells here"
    );
    assert!(
        removed_min_genes > 0 && f.n_cells() > 1000,
        "{removed_min_genes} removed"
    );
    let fg = table::read_frame(Path::new(&p("fgenes.arrow")), TableKind::Genes).unwrap();
    assert_eq!(fg.n_rows(), 400);
    for c in 0..f.n_cells() {
        assert!(f.x.row(c).0.len() >= 30);
    }

    run_ok("normalize", &[&p("f.arrow"), "-o", &p("n.arrow")]);
    let n = table::read_cells(Path::new(&p("n.arrow"))).unwrap();
    assert_eq!(n.values, ValueKind::Log1p);
    for c in 0..n.n_cells() {
        let sum: f64 = n.x.row(c).1.iter().map(|&v| (v as f64).exp_m1()).sum();
        assert!((sum - 1e4).abs() < 1e-2, "cell {c} sums to {sum}");
    }

    run_ok(
        "hvg",
        &[
            &p("n.arrow"),
            "-o",
            &p("h.arrow"),
            "--n-top-genes",
            "100",
            "--genes-out",
            &p("genes.tsv"),
        ],
    );
    let h = table::read_cells(Path::new(&p("h.arrow"))).unwrap();
    assert_eq!(h.n_genes(), 100);
    assert_eq!(h.n_cells(), n.n_cells());
    let tools: Vec<&str> = h.provenance.iter().map(|s| s.tool.as_str()).collect();
    assert_eq!(
        tools,
        [
            "cellweave-simulate",
            "cellweave-filter",
            "cellweave-normalize",
            "cellweave-hvg"
        ]
    );
    assert_eq!(h.provenance[3].params["n_top_genes"], 100);
    let genes = std::fs::read_to_string(p("genes.tsv")).unwrap();
    assert_eq!(genes.lines().count(), 1 + n.n_genes());
    assert!(genes
        .lines()
        .next()
        .unwrap()
        .contains("highly_variable_rank"));
    // genes kept in their original order
    let pos: Vec<usize> = h
        .gene_ids
        .iter()
        .map(|g| n.gene_ids.iter().position(|x| x == g).unwrap())
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]));

    // seurat_v3 on the log table with --counts equals seurat_v3 on the counts themselves
    run_ok(
        "hvg",
        &[
            &p("n.arrow"),
            "-o",
            &p("v3a.arrow"),
            "--flavor",
            "seurat_v3",
            "--counts",
            &p("f.arrow"),
            "--n-top-genes",
            "80",
            "--genes-out",
            &p("v3a.arrow.genes.arrow"),
        ],
    );
    run_ok(
        "hvg",
        &[
            &p("f.arrow"),
            "-o",
            &p("v3b.arrow"),
            "--flavor",
            "seurat_v3",
            "--n-top-genes",
            "80",
            "--genes-out",
            &p("v3b.arrow.genes.arrow"),
        ],
    );
    let ga = table::read_frame(Path::new(&p("v3a.arrow.genes.arrow")), TableKind::Genes).unwrap();
    let gb = table::read_frame(Path::new(&p("v3b.arrow.genes.arrow")), TableKind::Genes).unwrap();
    assert_eq!(ga.columns.len(), gb.columns.len());
    for ((na, ca), (nb, cb)) in ga.columns.iter().zip(&gb.columns) {
        assert_eq!(na, nb);
        // Debug text compares NaN equal to NaN
        assert!(
            format!("{ca:?}") == format!("{cb:?}"),
            "column {na} differs between --counts and counts input"
        );
    }
    let va = table::read_cells(Path::new(&p("v3a.arrow"))).unwrap();
    assert_eq!(
        va.values,
        ValueKind::Log1p,
        "the output keeps the input's values"
    );
    assert_eq!(
        va.gene_ids,
        table::read_cells(Path::new(&p("v3b.arrow")))
            .unwrap()
            .gene_ids
    );
}

#[test]
fn bad_input_is_one_line_and_no_output() {
    let d = tempfile::tempdir().unwrap();
    let raw = simulate(d.path(), "raw.arrow", &["--seed", "2"]);
    let p = |n: &str| d.path().join(n);
    run_ok("normalize", &[&s(&raw), "-o", &s(&p("n.arrow"))]);
    let n = s(&p("n.arrow"));
    let out = p("out.arrow");
    let o = s(&out);
    fails(
        "filter",
        &[&n, "-o", &o],
        &out,
        &["n.arrow", "cellweave.values", "expected raw counts"],
    );
    fails(
        "normalize",
        &[&n, "-o", &o],
        &out,
        &["n.arrow", "cellweave.values"],
    );
    fails(
        "hvg",
        &[&s(&raw), "-o", &o],
        &out,
        &["raw.arrow", "cellweave-normalize"],
    );
    fails(
        "hvg",
        &[&n, "-o", &o, "--batch-key", "donor"],
        &out,
        &["n.arrow", "'donor'", "column not found"],
    );
    fails(
        "hvg",
        &[&n, "-o", &o, "--flavor", "pearson"],
        &out,
        &["--flavor", "pearson"],
    );
    fails(
        "hvg",
        &[&n, "-o", &o, "--no-subset"],
        &out,
        &["--genes-out"],
    );
    fails(
        "filter",
        &[&s(&raw), "-o", &o, "--min-genes", "100000"],
        &out,
        &["raw.arrow", "all 1500 cells fail"],
    );
    fails(
        "filter",
        &[&s(&raw), "-o", &o, "--max-mito-pct=-3"],
        &out,
        &["--max-mito-pct"],
    );
    // the output may not overwrite the input
    let before = std::fs::read(&raw).unwrap();
    let r = run("filter", &[&s(&raw), "-o", &s(&raw)]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("would overwrite an input"));
    assert_eq!(std::fs::read(&raw).unwrap(), before);
    // a genes table is not a cells table
    run_ok(
        "hvg",
        &[
            &n,
            "-o",
            &s(&p("h.arrow")),
            "--genes-out",
            &s(&p("genes.arrow")),
        ],
    );
    fails(
        "filter",
        &[&s(&p("genes.arrow")), "-o", &o],
        &out,
        &["genes.arrow", "'genes' table"],
    );
    // a truncated file
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::write(p("trunc.arrow"), &bytes[..bytes.len() / 2]).unwrap();
    fails(
        "normalize",
        &[&s(&p("trunc.arrow")), "-o", &o],
        &out,
        &["trunc.arrow"],
    );
    // a cells table without one of the genes asked by --counts
    run_ok(
        "filter",
        &[&s(&raw), "-o", &s(&p("few.arrow")), "--min-cells", "200"],
    );
    fails(
        "hvg",
        &[
            &n,
            "-o",
            &o,
            "--flavor",
            "seurat_v3",
            "--counts",
            &s(&p("few.arrow")),
        ],
        &out,
        &["few.arrow", "is not in the counts table"],
    );
}
