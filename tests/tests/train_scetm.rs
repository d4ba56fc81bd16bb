//! cellweave-train --model scetm / cellweave-embed end to end on a small synthetic data set:
//! outputs and their contract (embedding, genes table, model card), determinism with a
//! seed, a resumed run equal to an uninterrupted one, embed == train's embedding, and the
//! one-line errors (no counts, normalized values as counts, counts of other cells, an
//! unknown model).

mod train_support;

use cellweave::contract::{CellsTable, TableKind, ValueKind};
use cellweave::io::table::{read_embedding, read_frame, write_cells};
use cellweave_tests::{assert_has, embedding_bits, run_fails, run_fails_one_line, s, strs};
use train_support::{cells_table, three_types, Data};

/// Counts of 3 cell types x 2 batches (batch b doubles a third of the genes): the counts
/// table, and its log1p version (the "HVG" table train reads the cells from).
fn tables(n: usize, g: usize, prefix: &str) -> (CellsTable, CellsTable) {
    let double = |b: usize, j: usize| {
        if b == 1 && j.is_multiple_of(3) {
            2.0
        } else {
            1.0
        }
    };
    let (dense, batch, types) = three_types((n, g), 12345, &["a", "b"], double);
    let counts = cells_table(prefix, g, &dense, &batch, &types, ValueKind::Counts);
    let mut logs = counts.clone();
    logs.x.data.iter_mut().for_each(|v| *v = v.ln_1p());
    logs.values = ValueKind::Log1p;
    (counts, logs)
}

fn data() -> Data {
    let d = Data::named("hvg.arrow", "", "filtered.arrow");
    let (counts, logs) = tables(120, 30, "c");
    write_cells(&d.cells, &logs).unwrap();
    write_cells(&d.counts, &counts).unwrap();
    d
}

fn train_args(d: &Data, model: &str, emb: &str, extra: &[&str]) -> Vec<String> {
    let inputs = ["--model", "scetm", "--counts", s(&d.counts)];
    let mut options = "--batch-size 40 --topics 6 --gene-embedding-dim 10 --checkpoint-every 2 \
                       --threads 1"
        .to_string();
    if !extra.contains(&"--epochs") {
        options += " --epochs 6";
    }
    d.train_args(&inputs, (model, emb), &options, extra)
}

fn train(d: &Data, model: &str, emb: &str, extra: &[&str]) {
    train_support::train_ok(&train_args(d, model, emb, extra));
}

#[test]
fn scetm_writes_embedding_genes_table_and_model() {
    let d = data();
    let genes = d.path("genes.tsv");
    train(
        &d,
        "m",
        "emb.arrow",
        &["--log", s(&d.path("log.tsv")), "--genes-out", s(&genes)],
    );
    let e = read_embedding(&d.path("emb.arrow")).unwrap();
    assert_eq!((e.n_cells(), e.dim, e.name.as_str()), (120, 6, "scetm"));
    assert!(e.data.iter().all(|v| v.is_finite()));
    assert!(e.column("cell_type").is_some() && e.column("batch").is_some());
    let m = d.path("m");
    let card = std::fs::read_to_string(m.join("card.yaml")).unwrap();
    assert_has(
        &card,
        &[
            "model: scetm",
            "values: counts",
            "topics: 6",
            "batch_bias: true",
            "embed: mu",
        ],
    );
    let g = read_frame(&m.join("genes.arrow"), TableKind::Genes).unwrap();
    assert_eq!(g.n_rows(), 30);
    let names: Vec<&str> = g.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..3], &["gene_id", "gene_name", "rho_0"]);
    assert!(names.contains(&"rho_9") && names.contains(&"topic_5") && !names.contains(&"topic_6"));
    let tsv = std::fs::read_to_string(&genes).unwrap();
    assert_eq!(tsv.lines().count(), 31);
    let log = std::fs::read_to_string(d.path("log.tsv")).unwrap();
    assert_eq!(log.lines().count(), 7, "{log}");
    assert!(
        log.starts_with("epoch\tsteps\tloss\tnll\tkl\tkl_weight"),
        "{log}"
    );
    assert!(
        !m.with_file_name(".m.checkpoint").exists(),
        "checkpoints removed at the end"
    );

    // theta: rows are topic proportions.
    train(
        &d,
        "m2",
        "theta.arrow",
        &["--embed", "theta", "--no-batch-bias"],
    );
    let t = read_embedding(&d.path("theta.arrow")).unwrap();
    for r in 0..t.n_cells() {
        let sum: f32 = t.row(r).iter().sum();
        assert!((sum - 1.0).abs() < 1e-4 && t.row(r).iter().all(|&v| v >= 0.0));
    }
    let card2 = std::fs::read_to_string(d.path("m2").join("card.yaml")).unwrap();
    assert!(card2.contains("batch_bias: false") && card2.contains("bias_batches: 0"));
}

#[test]
fn scetm_is_deterministic_resumes_exactly_and_embeds_as_trained() {
    let d = data();
    train(&d, "m1", "e1.arrow", &[]);
    train(&d, "m2", "e2.arrow", &[]);
    assert_eq!(
        embedding_bits(&d.path("e1.arrow")),
        embedding_bits(&d.path("e2.arrow"))
    );
    // Killed after epoch 4 (checkpoint at 4), then resumed.
    let a = train_args(&d, "m3", "e3.arrow", &["--stop-after-epoch", "4"]);
    let err = run_fails("train", &strs(&a), &d.path("e3.arrow"));
    assert!(err.contains("--resume"), "{err}");
    train(&d, "m3", "e3.arrow", &["--resume"]);
    assert_eq!(
        embedding_bits(&d.path("e1.arrow")),
        embedding_bits(&d.path("e3.arrow"))
    );
    // embed on the counts gives the training embedding.
    let a = d.embed(&d.counts, "m1", "embedded.arrow");
    let b = read_embedding(&d.path("e1.arrow")).unwrap();
    for (x, y) in a.data.iter().zip(&b.data) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
    }
    // ...and refuses log1p values.
    let bad = d.path("embedded2.arrow");
    let err = run_fails_one_line(
        "embed",
        &[s(&d.cells), "--model", s(&d.path("m1")), "-o", s(&bad)],
        &bad,
    );
    assert_has(&err, &["log1p", "raw counts"]);
}

#[test]
fn scetm_bad_input_fails_with_one_line_and_no_output() {
    let d = data();
    let emb = d.path("x.arrow");
    let fails = |extra: &[&str], drop_counts: bool| -> String {
        let mut a = train_args(&d, "m", "x.arrow", extra);
        if drop_counts {
            let i = a.iter().position(|x| x == "--counts").unwrap();
            a.drain(i..i + 2);
        }
        let err = run_fails_one_line("train", &strs(&a), &emb);
        assert!(!d.path("m").exists());
        err
    };
    // No counts.
    let err = fails(&[], true);
    assert!(err.contains("--counts"), "{err}");
    // Normalized values given as counts.
    let err = fails(&["--counts", s(&d.cells)], true);
    assert_has(&err, &["hvg.arrow", "log1p", "raw counts"]);
    // A counts table tagged counts that holds fractions.
    let (mut c, _) = tables(120, 30, "c");
    c.x.data.iter_mut().for_each(|v| *v *= 0.37);
    let frac = d.path("fractions.arrow");
    write_cells(&frac, &c).unwrap();
    let err = fails(&["--counts", s(&frac)], true);
    assert_has(&err, &["fractions.arrow", "not a count"]);
    // Counts of other cells.
    let (other, _) = tables(120, 30, "z");
    let op = d.path("other.arrow");
    write_cells(&op, &other).unwrap();
    let err = fails(&["--counts", s(&op)], true);
    assert_has(&err, &["other.arrow", "120 of 120 cells"]);
    // An unknown model.
    let mut a = train_args(&d, "m", "x.arrow", &[]);
    let i = a.iter().position(|x| x == "scetm").unwrap();
    a[i] = "nosuchmodel".into();
    let err = run_fails_one_line("train", &strs(&a), &emb);
    assert_has(&err, &["nosuchmodel", "scetm"]);
}
