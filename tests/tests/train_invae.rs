//! cellweave-train --model invae reads the rows of a cellweave Arrow table from the
//! memory-mapped file (issue 18) and those of other inputs from the table read whole: the
//! same weights and embedding bit for bit, whether the counts are the cells table itself or
//! come from --counts.

use cellweave_tests::{embedding_bits, run_ok, s};

#[test]
fn invae_mapped_rows_train_as_the_table_read_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let p = |n: &str| d.join(n);
    let sim = [
        "--cells",
        "400",
        "--genes",
        "80",
        "--batches",
        "2",
        "--density",
        "0.3",
    ];
    run_ok(
        "simulate",
        &[&sim[..], &["--seed", "2", "-q", "-o", s(&p("raw.arrow"))]].concat(),
    );
    run_ok(
        "normalize",
        &[s(&p("raw.arrow")), "-q", "-o", s(&p("norm.arrow"))],
    );
    // Each table also as two record batches (mapped) and as Parquet (read whole).
    for name in ["raw", "norm"] {
        cellweave_tests::write_split_and_parquet(
            &p(&format!("{name}.arrow")),
            &[150],
            &p(&format!("{name}_two.arrow")),
            &p(&format!("{name}.parquet")),
        );
    }
    let train = |out: &str, cells: &str, counts: Option<&str>| {
        let (input, m, e) = (p(cells), p(out), p(&format!("{out}.arrow")));
        let mut a = vec![
            s(&input),
            "--model",
            "invae",
            "-o",
            s(&m),
            "--embedding",
            s(&e),
        ];
        a.extend(["--epochs", "2", "--threads", "1", "-q"]);
        let c = counts.map(p);
        if let Some(c) = &c {
            a.extend(["--counts", s(c)]);
        }
        run_ok("train", &a);
        let weights = std::fs::read(m.join("model.safetensors")).unwrap();
        (embedding_bits(&e), weights)
    };
    let check = |runs: &[(&str, &str, Option<&str>)]| {
        let first = train(runs[0].0, runs[0].1, runs[0].2);
        for &(out, cells, counts) in &runs[1..] {
            assert_eq!(first, train(out, cells, counts), "{out}");
        }
    };
    // The cells table holds the counts.
    check(&[
        ("a", "raw.arrow", None),
        ("b", "raw_two.arrow", None),
        ("c", "raw.parquet", None),
    ]);
    // Log values with --counts.
    check(&[
        ("d", "norm.arrow", Some("raw.arrow")),
        ("e", "norm_two.arrow", Some("raw.arrow")),
        ("f", "norm.parquet", Some("raw.arrow")),
    ]);
}
