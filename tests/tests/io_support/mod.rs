//! Shared by the io tests: the Python oracle (anndata / scipy / h5py), the facts in the
//! shared data's SOURCE.txt, and checks of failed runs.
#![allow(dead_code)]

use cellweave::contract::CellsTable;
use cellweave::io::table;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// A Python with anndata, scipy and h5py: `$CELLWEAVE_PYTHON`, the reference venv next to
/// the repository (`../venv-ref`), or `python3`. None (a loud skip) when there is none;
/// a panic under CI=true.
pub fn python() -> Option<PathBuf> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CELLWEAVE_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(repo.join("../venv-ref/bin/python"));
    candidates.push(PathBuf::from("python3"));
    for c in candidates {
        let ok = Command::new(&c)
            .args(["-c", "import anndata, scipy, h5py, numpy"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(c);
        }
    }
    if ci() {
        panic!(
            "CI=true but no Python with anndata, scipy and h5py was found (set CELLWEAVE_PYTHON)"
        );
    }
    eprintln!("\n!!!!! SKIPPING the Python (anndata) checks: no Python with anndata, scipy and h5py (set CELLWEAVE_PYTHON) !!!!!\n");
    None
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

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
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
