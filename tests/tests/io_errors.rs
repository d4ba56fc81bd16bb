//! Bad input to cellweave-import / cellweave-export: each case must fail with a non-zero
//! exit, one stderr line naming the file and the field, and no output file.

mod io_support;

use cellweave::contract::{PairKind, PairsTable};
use cellweave::io::table;
use cellweave_tests::{run, run_ok, shared};
use io_support::*;
use std::path::{Path, PathBuf};

/// A small 10x folder with the given matrix text.
fn folder(dir: &Path, name: &str, matrix: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("matrix.mtx"), matrix).unwrap();
    std::fs::write(
        d.join("features.tsv"),
        "g1\tA\tGene Expression\ng2\tB\tGene Expression\ng3\tC\tGene Expression\n",
    )
    .unwrap();
    std::fs::write(d.join("barcodes.tsv"), "c1\nc2\n").unwrap();
    d
}

#[test]
fn malformed_mtx_and_values() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.arrow");
    let head = "%%MatrixMarket matrix coordinate integer general\n%\n3 2 4\n";
    let d = folder(
        tmp.path(),
        "bad_token",
        &format!("{head}1 1 1\n2 1 3\n3 x 1\n1 2 1\n"),
    );
    import_fails(&[s(&d)], &out, "matrix.mtx", &["line 6", "field 'entries'"]);
    let d = folder(tmp.path(), "short", &format!("{head}1 1 1\n2 1 3\n"));
    import_fails(
        &[s(&d)],
        &out,
        "matrix.mtx",
        &["2 of the 4 entries", "field 'entries'"],
    );
    let d = folder(
        tmp.path(),
        "negative",
        &format!("{head}1 1 1\n2 1 -3\n3 1 1\n1 2 1\n"),
    );
    import_fails(&[s(&d)], &out, "matrix.mtx", &["line 5", "field 'values'"]);
    let real = "%%MatrixMarket matrix coordinate real general\n3 2 2\n1 1 1.5\n2 2 nan\n";
    let d = folder(tmp.path(), "nan", real);
    import_fails(&[s(&d)], &out, "matrix.mtx", &["NaN", "field 'values'"]);
    let d = folder(
        tmp.path(),
        "shape",
        "%%MatrixMarket matrix coordinate integer general\n4 2 1\n1 1 1\n",
    );
    import_fails(&[s(&d)], &out, "matrix.mtx", &["field 'shape'", "3 genes"]);
    // Non-count values are accepted when the user says what they are (in a file whose
    // header declares real values: an integer header holding 0.5 is refused).
    let d = folder(
        tmp.path(),
        "fraction",
        &format!("{head}1 1 0.5\n2 1 3\n3 1 1\n1 2 1\n"),
    );
    import_fails(&[s(&d)], &out, "matrix.mtx", &["not an integer", "line 4"]);
    let real_head = "%%MatrixMarket matrix coordinate real general\n%\n3 2 4\n";
    let d = folder(
        tmp.path(),
        "lognorm",
        &format!("{real_head}1 1 0.5\n2 1 3\n3 1 1\n1 2 1\n"),
    );
    run_ok("import", &["-q", s(&d), "--values", "log1p", "-o", s(&out)]);
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn truncated_shared_files() {
    let Some(sh) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.arrow");
    let k = sh.join("data/kang_ifnb");
    // Truncated gzip stream of a real matrix.
    let d = tmp.path().join("trunc_mtx");
    std::fs::create_dir_all(&d).unwrap();
    let bytes = std::fs::read(k.join("matrix.mtx.gz")).unwrap();
    std::fs::write(d.join("matrix.mtx.gz"), &bytes[..bytes.len() / 2]).unwrap();
    for f in ["features.tsv.gz", "barcodes.tsv.gz"] {
        std::fs::copy(k.join(f), d.join(f)).unwrap();
    }
    import_fails(
        &[s(&d)],
        &out,
        "matrix.mtx.gz",
        &["truncated", "field 'entries'", "line "],
    );
    // Truncated h5ad.
    let h = tmp.path().join("trunc.h5ad");
    let bytes = std::fs::read(k.join("kang_ifnb.h5ad")).unwrap();
    std::fs::write(&h, &bytes[..bytes.len() * 3 / 4]).unwrap();
    import_fails(
        &[s(&h)],
        &out,
        "trunc.h5ad",
        &["truncated", "field 'file size'"],
    );
    // Not an HDF5 file at all.
    let h = tmp.path().join("text.h5ad");
    std::fs::write(&h, "hello").unwrap();
    import_fails(&[s(&h)], &out, "text.h5ad", &["field 'HDF5 header'"]);
}

#[test]
fn metadata_problems() {
    let Some(sh) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.arrow");
    let k = sh.join("data/kang_ifnb");
    let h = k.join("kang_ifnb.h5ad");
    import_fails(
        &[s(&h), "--batch-key", "donor"],
        &out,
        "kang_ifnb.h5ad",
        &["field 'donor'", "cell_type", "condition"],
    );
    import_fails(
        &[s(&h), s(&h)],
        &out,
        "kang_ifnb.h5ad",
        &["field 'cell_id'", "1556 duplicate", "--make-unique"],
    );
    import_fails(
        &[s(&h), "--layer", "spliced"],
        &out,
        "kang_ifnb.h5ad",
        &["field 'layers/spliced'", "counts"],
    );
    // An obs file that misses some cells.
    let obs = std::fs::read_to_string(k.join("obs.tsv")).unwrap();
    let short: String = obs.lines().take(1000).map(|l| format!("{l}\n")).collect();
    let p = tmp.path().join("short_obs.tsv");
    std::fs::write(&p, short).unwrap();
    import_fails(
        &[s(&h), "--obs", s(&p)],
        &out,
        "short_obs.tsv",
        &["field 'cell_id'", "557 of 1556"],
    );
}

#[test]
fn empty_batch_and_wrong_table_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.arrow");
    // An AnnData whose batch categorical has a category without cells.
    let p = tmp.path().join("empty_batch.h5ad");
    let t = write_unused_batch_h5ad(&p);
    import_fails(
        &[s(&p)],
        &out,
        "empty_batch.h5ad",
        &["field 'batch'", "no cells: s2"],
    );

    // A pairs table where a cells table is expected, on both tools.
    let mut pairs = PairsTable {
        n_cells: 2,
        fingerprint: t.fingerprint(),
        ..Default::default()
    };
    pairs.push(PairKind::Mnn, 0, 1, 0.5, f32::NAN);
    let pp = tmp.path().join("pairs.arrow");
    table::write_pairs(&pp, &pairs).unwrap();
    import_fails(
        &[s(&pp)],
        &out,
        "pairs.arrow",
        &["field 'cellweave.table'", "'pairs'"],
    );
    let h = tmp.path().join("out.h5ad");
    assert_fails(
        &run("export", &["-q", s(&pp), "-o", s(&h)]),
        &h,
        "pairs.arrow",
        &["field 'cellweave.table'", "'pairs'"],
    );
    // A 10x folder without barcodes (an input with no cells).
    let d = folder(
        tmp.path(),
        "nobarcodes",
        "%%MatrixMarket matrix coordinate integer general\n3 0 0\n",
    );
    std::fs::write(d.join("barcodes.tsv"), "").unwrap();
    import_fails(
        &[s(&d)],
        &out,
        "barcodes.tsv",
        &["field 'cell_id'", "no barcodes"],
    );
}
