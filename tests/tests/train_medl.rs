//! cellweave-train --model medl and cellweave-embed on a MEDL model, end to end on
//! simulated data: outputs, embed == train's FE and RE latents, counterfactual cells
//! (a cell mapped to its own batch is its reconstruction) and their view across batches
//! (cellweave-plot --across-batches), 150 batches, and errors.

use cellweave::io::table::{read_cells, read_embedding};
use cellweave_tests::{assert_has, run_fails_one_line, run_ok, s};
use std::path::Path;

/// Simulated counts -> log1p cells table at `dir/cells.arrow`.
fn simulate(dir: &Path, cells: &str, genes: &str, batches: &str) -> std::path::PathBuf {
    let raw = dir.join("raw.arrow");
    let norm = dir.join("cells.arrow");
    run_ok(
        "simulate",
        &[
            "--cells",
            cells,
            "--genes",
            genes,
            "--batches",
            batches,
            "--cell-types",
            "3",
            "--density",
            "0.3",
            "--seed",
            "1",
            "-q",
            "-o",
            s(&raw),
        ],
    );
    run_ok("normalize", &[s(&raw), "-q", "-o", s(&norm)]);
    norm
}

fn train(dir: &Path, cells: &Path, extra: &[&str]) {
    let (m, fe, re) = (
        dir.join("model"),
        dir.join("fe.arrow"),
        dir.join("re.arrow"),
    );
    let mut args = vec![
        s(cells),
        "--model",
        "medl",
        "-o",
        s(&m),
        "--embedding",
        s(&fe),
        "--re-embedding",
        s(&re),
        "-q",
    ];
    args.extend(extra);
    run_ok("train", &args);
}

/// `cellweave-embed` arguments: `cells` with the model folder `model`, then `extra`, and
/// `-o out -q`.
fn embed_args<'a>(
    cells: &'a Path,
    model: &'a Path,
    extra: &[&'a str],
    out: &'a Path,
) -> Vec<&'a str> {
    [
        &[s(cells), "--model", s(model)][..],
        extra,
        &["-o", s(out), "-q"],
    ]
    .concat()
}

#[test]
fn medl_train_embed_and_counterfactuals() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cells = simulate(d, "300", "60", "3");
    train(
        d,
        &cells,
        &["--epochs", "3", "--batch-size", "64", "--seed", "2"],
    );
    let card = std::fs::read_to_string(d.join("model/card.yaml")).unwrap();
    assert!(card.starts_with("model: medl"), "{card}");
    assert_has(
        &card,
        &[
            "lambda_rec: 1000",
            "re_rec: 110",
            "kl_weight: 0.00001",
            "lr: 0.0001",
        ],
    );
    // embed gives the training run's FE and RE latents.
    let model = d.join("model");
    let fe = d.join("fe2.arrow");
    run_ok(
        "embed",
        &[s(&cells), "--model", s(&model), "-o", s(&fe), "-q"],
    );
    assert_eq!(
        read_embedding(&fe).unwrap().data,
        read_embedding(&d.join("fe.arrow")).unwrap().data
    );
    let re = d.join("re2.arrow");
    let args = embed_args(&cells, &model, &["--random-effects"], &re);
    run_ok("embed", &args);
    assert_eq!(
        read_embedding(&re).unwrap().data,
        read_embedding(&d.join("re.arrow")).unwrap().data
    );
    // Counterfactuals: every cell as if from b1 and as if from b2. A cell of b1 mapped to
    // b1 is its own reconstruction, the same in both calls only when the target is its own.
    let cf = |b: &str| {
        let out = d.join(format!("cf_{b}.arrow"));
        let args = embed_args(&cells, &model, &["--as-batch", b], &out);
        run_ok("embed", &args);
        read_cells(&out).unwrap()
    };
    let (c1, c2) = (cf("b1"), cf("b2"));
    let orig = read_cells(&cells).unwrap();
    assert_eq!(c1.values, orig.values);
    assert_eq!(c1.cell_ids, orig.cell_ids);
    assert!(c1.batch.categories == vec!["b1".to_string()]);
    let (mut own_b1, mut differ) = (0, 0);
    let b1 = orig
        .batch
        .categories
        .iter()
        .position(|c| c == "b1")
        .unwrap() as u32;
    assert_eq!(c1.n_genes(), orig.n_genes());
    for i in 0..orig.n_cells() {
        let (a, b) = (c1.x.to_dense_rows(&[i]), c2.x.to_dense_rows(&[i]));
        if orig.batch.codes[i] == b1 {
            own_b1 += 1;
        }
        if a != b {
            differ += 1;
        }
    }
    assert!(own_b1 > 0);
    assert_eq!(
        differ,
        orig.n_cells(),
        "the target batch changes every cell"
    );
    // Deterministic: the same call gives the same cells.
    let c1_again = cf("b1");
    assert_eq!(c1_again.x, c1.x);

    // One cell type across all batches (cellweave-plot --across-batches): two panels side by
    // side from the three counterfactual tables; a type no cell has is one error line.
    cf("b0");
    let tables: Vec<_> = ["b0", "b1", "b2"]
        .iter()
        .map(|b| d.join(format!("cf_{b}.arrow")))
        .collect();
    let kind = orig
        .column("cell_type")
        .expect("cell_type")
        .to_categorical();
    let selector = format!("cell_type={}", kind.categories[0]);
    let png = d.join("across.png");
    let mut args: Vec<&str> = tables.iter().map(|p| s(p)).collect();
    args.extend(["--across-batches", &selector, "-o", s(&png), "-q"]);
    run_ok("plot", &args);
    let bytes = std::fs::read(&png).unwrap();
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    // Two square panels side by side: wider than 1.5 times the height.
    assert!(bytes.starts_with(b"\x89PNG") && 2 * be(16) > 3 * be(20));
    let bad = d.join("bad.png");
    let err = run_fails_one_line(
        "plot",
        &[
            s(&tables[0]),
            "--across-batches",
            "cell_type=nope",
            "-o",
            s(&bad),
        ],
        &bad,
    );
    assert_has(&err, &["cell_type nope", "cf_b0.arrow"]);
    let err = run_fails_one_line(
        "plot",
        &[s(&cells), "--across-batches", "x", "-o", s(&bad)],
        &bad,
    );
    assert!(err.contains("--as-batch"), "{err}");
}

#[test]
fn medl_trains_on_150_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cells = simulate(d, "1500", "40", "150");
    assert_eq!(read_cells(&cells).unwrap().batch.categories.len(), 150);
    train(d, &cells, &["--epochs", "1", "--batch-size", "256"]);
    let card = std::fs::read_to_string(d.join("model/card.yaml")).unwrap();
    assert!(card.contains("n_batches: 150"));
    assert_eq!(read_embedding(&d.join("re.arrow")).unwrap().n_cells(), 1500);
    let (out, m) = (d.join("cf.arrow"), d.join("model"));
    let args = embed_args(&cells, &m, &["--as-batch", "b149"], &out);
    run_ok("embed", &args);
    assert_eq!(read_cells(&out).unwrap().n_cells(), 1500);
}

#[test]
fn medl_errors_are_one_line_without_output() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cells = simulate(d, "120", "30", "2");
    let raw = d.join("raw.arrow");
    let emb = d.join("e.arrow");
    let model = d.join("m");
    let base = |c: &Path| -> Vec<String> {
        [
            "--model",
            "medl",
            "-o",
            s(&model),
            "--embedding",
            s(&emb),
            "-q",
        ]
        .iter()
        .map(|x| x.to_string())
        .chain([s(c).to_string()])
        .collect()
    };
    let a = base(&raw);
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    let e = run_fails_one_line("train", &args, &emb);
    assert!(e.contains("log-normalized"), "{e}");
    let mut a = base(&cells);
    a.extend(["--dropout".into(), "0.1".into()]);
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    assert!(run_fails_one_line("train", &args, &emb).contains("dropout"));
    let mut a = base(&cells);
    a.extend(["--batch-key".into(), "nope".into()]);
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    assert!(run_fails_one_line("train", &args, &emb).contains("nope"));
    // A model, then embed errors.
    train(d, &cells, &["--epochs", "1"]);
    let out = d.join("cf.arrow");
    let m = d.join("model");
    let args = embed_args(&cells, &m, &["--as-batch", "zz"], &out);
    let e = run_fails_one_line("embed", &args, &out);
    assert_has(&e, &["'zz'", "b0"]);
    let args = embed_args(&raw, &m, &["--as-batch", "b0"], &out);
    assert!(run_fails_one_line("embed", &args, &out).contains("values"));
}

/// MEDL reads the rows of a cellweave Arrow table from the memory-mapped file (issue 18)
/// and those of other inputs from the table read whole: an Arrow file of one record batch,
/// of two and a Parquet file give the same weights and FE / RE embeddings bit for bit.
#[test]
fn medl_mapped_rows_train_as_the_table_read_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cells = simulate(d, "300", "60", "3");
    cellweave_tests::write_split_and_parquet(
        &cells,
        &[110],
        &d.join("two.arrow"),
        &d.join("whole.parquet"),
    );
    let outputs = |name: &str, input: &Path| {
        let dir = d.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        train(&dir, input, &["--epochs", "3", "--batch-size", "64"]);
        let bits = |f: &str| cellweave_tests::embedding_bits(&dir.join(f));
        let weights = std::fs::read(dir.join("model/model.safetensors")).unwrap();
        (bits("fe.arrow"), bits("re.arrow"), weights)
    };
    let one = outputs("one", &cells);
    assert_eq!(one, outputs("two", &d.join("two.arrow")));
    assert_eq!(one, outputs("whole", &d.join("whole.parquet")));
}
