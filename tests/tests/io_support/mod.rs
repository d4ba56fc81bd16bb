//! Shared by the io tests: the Python oracle (anndata / scipy / h5py), the facts in the
//! shared data's SOURCE.txt, and checks of failed runs.
#![allow(dead_code)]

use cellweave::contract::CellsTable;
use cellweave::io::table;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use cellweave_tests::s;

/// A Python with anndata, scipy and h5py: the reference stack
/// ([`cellweave_tests::reference_python`]). None (a loud skip) when there is none; a panic
/// under CI=true.
pub fn python() -> Option<PathBuf> {
    cellweave_tests::reference_python(&["anndata", "scipy", "h5py", "numpy"])
}

/// Run a Python script with arguments; panics with its output unless it succeeds.
pub fn run_python(py: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("spawn python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python check failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `key: value` lines of a dataset's SOURCE.txt.
pub fn facts(dir: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(dir.join("SOURCE.txt")).expect("SOURCE.txt");
    let mut m = HashMap::new();
    for l in text.lines().flat_map(|l| l.split(';')) {
        if let Some((k, v)) = l.split_once(':') {
            m.entry(k.trim().to_string())
                .or_insert_with(|| v.trim().to_string());
        }
    }
    m
}

/// `a=1, b=2` -> map.
pub fn sizes(s: &str) -> HashMap<String, usize> {
    s.split(',')
        .filter_map(|p| p.trim().rsplit_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().parse().expect("a size")))
        .collect()
}

/// Cells per batch.
pub fn batch_sizes(t: &CellsTable) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for i in 0..t.n_cells() {
        *m.entry(t.batch.get(i).unwrap().to_string()).or_insert(0) += 1;
    }
    m
}

pub fn read(p: &Path) -> CellsTable {
    table::read_cells(p).unwrap_or_else(|e| panic!("{e}"))
}

/// `cellweave-import ARGS... -o OUT`, then the cells table it wrote.
pub fn import(args: &[&str], out: &Path) -> CellsTable {
    cellweave_tests::run_ok("import", &[args, &["-o", s(out)]].concat());
    read(out)
}

/// A failed run (started with `-q`): non-zero exit, one stderr line naming the file and a field (and every
/// `needles`), and no output left behind.
pub fn assert_fails(out: &Output, output: &Path, file: &str, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !out.status.success(),
        "expected a failure, got success; stderr:\n{err}"
    );
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{err}");
    let line = lines[0];
    assert!(
        line.contains(file),
        "error does not name the file '{file}': {line}"
    );
    assert!(
        line.contains("field '"),
        "error does not name a field: {line}"
    );
    for n in needles {
        assert!(line.contains(n), "error does not say '{n}': {line}");
    }
    assert!(
        !output.exists(),
        "a failed run left {} behind",
        output.display()
    );
    let parent = output.parent().unwrap();
    let name = output.file_name().unwrap().to_string_lossy().to_string();
    for e in std::fs::read_dir(parent).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        assert!(
            !n.starts_with(&format!(".{name}.tmp")),
            "a failed run left a temporary file {n}"
        );
    }
}

/// A 10x folder `<dir>` (genes x cells, 4 genes) with these barcodes; cell c counts c + 1
/// of gene c % 3.
pub fn tenx(dir: &Path, barcodes: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("features.tsv"),
        "ENSG1\tA1\tGene Expression\nENSG2\tB2\tGene Expression\nENSG3\tC3\tGene Expression\nENSG4\tD4\tGene Expression\n",
    )
    .unwrap();
    std::fs::write(dir.join("barcodes.tsv"), barcodes.join("\n") + "\n").unwrap();
    let mut mtx = format!(
        "%%MatrixMarket matrix coordinate integer general\n4 {} {}\n",
        barcodes.len(),
        barcodes.len()
    );
    for c in 0..barcodes.len() {
        mtx += &format!("{} {} {}\n", c % 3 + 1, c + 1, c + 1);
    }
    std::fs::write(dir.join("matrix.mtx"), mtx).unwrap();
}

/// Two Cell Ranger sample folders (`<sample>/outs/filtered_feature_bc_matrix`) sharing the
/// barcodes AAAC-1 and AAAG-1; the first has AACT-1 too.
pub fn two_cellranger_samples(a: &Path, b: &Path) {
    tenx(
        &a.join("outs/filtered_feature_bc_matrix"),
        &["AAAC-1", "AAAG-1", "AACT-1"],
    );
    tenx(
        &b.join("outs/filtered_feature_bc_matrix"),
        &["AAAC-1", "AAAG-1"],
    );
}

/// `cellweave-import -q ARGS -o OUT` fails with one line naming `file` and holding every
/// needle, and leaves no output.
pub fn import_fails(args: &[&str], out: &Path, file: &str, needles: &[&str]) {
    let mut a = vec!["-q"];
    a.extend_from_slice(args);
    a.extend(["-o", s(out)]);
    assert_fails(&cellweave_tests::run("import", &a), out, file, needles);
}

/// Simulated raw counts (300 cells x 200 genes, 20% non-zero) at `path`.
pub fn simulate_counts(path: &Path) {
    cellweave_tests::run_ok(
        "simulate",
        &[
            "-q",
            "--cells",
            "300",
            "--genes",
            "200",
            "--density",
            "0.2",
            "-o",
            s(path),
        ],
    );
}

/// An AnnData of two cells whose batch categorical has a category without cells (`s2`);
/// returns the table written.
pub fn write_unused_batch_h5ad(path: &Path) -> CellsTable {
    use cellweave::contract::{Categorical, Csr, ValueKind};
    use cellweave::io::formats::h5ad;
    let t = CellsTable {
        cell_ids: vec!["a".into(), "b".into()],
        batch: Categorical {
            codes: vec![0, 0],
            categories: vec!["s1".into(), "s2".into()],
        },
        obs: vec![],
        gene_ids: vec!["g".into()],
        gene_names: vec!["g".into()],
        x: Csr::from_dense(2, 1, &[1.0, 2.0]),
        values: ValueKind::Counts,
        provenance: vec![],
    };
    h5ad::write_h5ad(path, &h5ad::anndata_of(&t)).unwrap();
    t
}
