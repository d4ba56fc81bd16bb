//! cellweave-pairs --definition deepmnn / cellweave-train --model deepmnn / cellweave-embed
//! end to end on a small synthetic data set: the pairs and their provenance, the outputs
//! and their contract (embedding, corrected cells table, model card), determinism with a
//! seed, a resumed run equal to an uninterrupted one, embed == train's embedding, and the
//! one-line errors (pairs of other cells, counts instead of log-normalized values, an
//! unknown model, a batch the model has not seen).

mod train_support;

use cellweave::contract::CellsTable;
use cellweave::contract::{PairKind, ValueKind};
use cellweave::io::table::{read_cells, read_embedding, read_pairs, write_cells};
use cellweave_tests::{
    assert_has, embedding_bits as bits, run_fails, run_fails_one_line, run_ok, s, strs,
};
use train_support::{cells_table, three_types, Data};

/// Log1p values of 3 cell types x 3 batches (batch b shifts a third of the genes), cell
/// ids prefixed by `prefix`, batches named from `names`.
fn table(n: usize, g: usize, prefix: &str, names: [&str; 3]) -> CellsTable {
    let shift = |b: usize, j: usize| {
        if j % 3 == b {
            1.0 + 0.5 * b as f64
        } else {
            1.0
        }
    };
    let (mut dense, batch, types) = three_types((n, g), 777, &names, shift);
    dense.iter_mut().for_each(|v| *v = v.ln_1p());
    cells_table(prefix, g, &dense, &batch, &types, ValueKind::Log1p)
}

const BATCHES: [&str; 3] = ["a", "b", "c"];

fn data() -> Data {
    let d = Data::named("hvg.arrow", "pairs.arrow", "");
    write_cells(&d.cells, &table(150, 24, "c", BATCHES)).unwrap();
    run_ok(
        "pairs",
        &[
            s(&d.cells),
            "-o",
            s(&d.pairs),
            "--definition",
            "deepmnn",
            "--deepmnn-pcs",
            "10",
        ],
    );
    d
}

fn train_args(d: &Data, model: &str, emb: &str, extra: &[&str]) -> Vec<String> {
    let inputs = ["--model", "deepmnn", "--pairs", s(&d.pairs)];
    let options = "--epochs 6 --batch-size 64 --lr 0.01 --latent 8 --projection-pcs 10 \
                   --checkpoint-every 2";
    d.train_args(&inputs, (model, emb), options, extra)
}

fn train(d: &Data, model: &str, emb: &str, extra: &[&str]) {
    train_support::train_ok(&train_args(d, model, emb, extra));
}

#[test]
fn deepmnn_pairs_train_and_outputs() {
    let d = data();
    let p = read_pairs(&d.pairs).unwrap();
    assert!(p.len() > 50, "{} pairs", p.len());
    assert!(p.kind.iter().all(|k| *k == PairKind::Mnn), "no KNN rows");
    let step = p.provenance.last().unwrap();
    assert_eq!(step.params["definition"], "deepmnn");
    assert_eq!(step.params["deepmnn"]["k"], 20);
    assert_eq!(
        step.params["deepmnn_batch_pairs"].as_array().unwrap().len(),
        3
    );
    train(
        &d,
        "m",
        "e.arrow",
        &["--corrected", s(&d.path("corr.arrow"))],
    );
    let e = read_embedding(&d.path("e.arrow")).unwrap();
    assert_eq!((e.n_cells(), e.dim, e.name.as_str()), (150, 8, "deepmnn"));
    let c = read_cells(&d.path("corr.arrow")).unwrap();
    assert_eq!(c.values, ValueKind::Corrected);
    assert_eq!((c.n_cells(), c.n_genes()), (150, 24));
    let card = std::fs::read_to_string(d.path("m").join("card.yaml")).unwrap();
    assert_has(
        &card,
        &[
            "model: deepmnn",
            "pairs_definition: deepmnn",
            "blocks: 2",
            "identity_weight: 0.001",
        ],
    );
    assert!(d.path("m").join("training_log.arrow").exists());
}

/// The same cells as one record batch (mapped), three record batches (mapped) and Parquet
/// (read whole) train to the same bits: weights, embedding, corrected table and log.
#[test]
fn deepmnn_mapped_rows_train_as_the_table_read_whole() {
    let d = data();
    let p = |n: &str| d.path(n);
    cellweave_tests::write_split_and_parquet(
        &d.cells,
        &[61, 62],
        &p("three.arrow"),
        &p("whole.parquet"),
    );
    let run = |cells: &str, name: &str| {
        let corrected = format!("{name}_corr.arrow");
        let mut a = train_args(
            &d,
            name,
            &format!("{name}_emb.arrow"),
            &["--corrected", s(&p(&corrected))],
        );
        a[0] = s(&p(cells)).into();
        let (weights, loss) = cellweave_tests::train_reading_rows(&a, &p(name));
        let c = read_cells(&p(&corrected)).unwrap();
        let x: Vec<u32> = c.x.data.iter().map(|v| v.to_bits()).collect();
        let shape = (c.x.indptr.clone(), c.x.indices.clone());
        (
            d.bits(&format!("{name}_emb.arrow")),
            weights,
            x,
            shape,
            loss,
        )
    };
    let one = run("hvg.arrow", "one");
    assert_eq!(one, run("three.arrow", "three"));
    assert_eq!(one, run("whole.parquet", "parquet"));
}

#[test]
fn deepmnn_is_deterministic_resumes_exactly_and_embeds_as_trained() {
    let d = data();
    train(&d, "m1", "e1.arrow", &[]);
    train(&d, "m2", "e2.arrow", &[]);
    assert_eq!(bits(&d.path("e1.arrow")), bits(&d.path("e2.arrow")));
    let a = train_args(&d, "m3", "e3.arrow", &["--stop-after-epoch", "4"]);
    let err = run_fails("train", &strs(&a), &d.path("e3.arrow"));
    assert!(err.contains("--resume"), "{err}");
    train(&d, "m3", "e3.arrow", &["--resume"]);
    assert_eq!(bits(&d.path("e1.arrow")), bits(&d.path("e3.arrow")));
    let x = d.embed(&d.cells, "m1", "embedded.arrow");
    let y = read_embedding(&d.path("e1.arrow")).unwrap();
    let scale = y.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (u, v) in x.data.iter().zip(&y.data) {
        assert!((u - v).abs() <= 1e-4 * scale, "{u} vs {v}");
    }
}

#[test]
fn deepmnn_bad_input_fails_with_one_line_and_no_output() {
    let d = data();
    let emb = d.path("x.arrow");
    let fails = |a: Vec<String>| -> String {
        let err = run_fails_one_line("train", &strs(&a), &emb);
        assert!(!d.path("m").exists());
        err
    };
    // Pairs of other cells.
    let other = d.path("other.arrow");
    write_cells(&other, &table(150, 24, "z", BATCHES)).unwrap();
    let mut a = train_args(&d, "m", "x.arrow", &[]);
    a[0] = other.display().to_string();
    let err = fails(a);
    assert!(err.contains("other cells"), "{err}");
    // Counts instead of log-normalized values.
    let mut counts = table(150, 24, "c", BATCHES);
    counts
        .x
        .data
        .iter_mut()
        .for_each(|v| *v = v.exp_m1().round());
    counts.values = ValueKind::Counts;
    let cp = d.path("counts.arrow");
    write_cells(&cp, &counts).unwrap();
    let mut a = train_args(&d, "m", "x.arrow", &[]);
    a[0] = cp.display().to_string();
    let err = fails(a);
    assert_has(&err, &["counts", "log-normalized"]);
    // No pairs.
    let mut a = train_args(&d, "m", "x.arrow", &[]);
    let i = a.iter().position(|x| x == "--pairs").unwrap();
    a.drain(i..i + 2);
    let err = fails(a);
    assert!(err.contains("--pairs"), "{err}");
    // An unknown model.
    let mut a = train_args(&d, "m", "x.arrow", &[]);
    a[2] = "deepmn".into();
    let err = fails(a);
    assert_has(&err, &["deepmn", "deepmnn"]);
    // embed: a batch the model was not trained on.
    train(&d, "m1", "e1.arrow", &[]);
    let new = d.path("new.arrow");
    write_cells(&new, &table(30, 24, "n", ["a", "b", "zz"])).unwrap();
    let out = d.path("new_emb.arrow");
    let err = run_fails_one_line(
        "embed",
        &[s(&new), "--model", s(&d.path("m1")), "-o", s(&out)],
        &out,
    );
    assert_has(&err, &["'zz'", "trained"]);
    // ...and maps new cells of known batches.
    write_cells(&new, &table(30, 24, "n", BATCHES)).unwrap();
    run_ok(
        "embed",
        &[s(&new), "--model", s(&d.path("m1")), "-o", s(&out)],
    );
    assert_eq!(read_embedding(&out).unwrap().n_cells(), 30);
}
