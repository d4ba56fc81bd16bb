//! Shared by the train tests: the random numbers and the cells tables of the synthetic
//! data sets, a test's temporary folder of inputs, and `cellweave-train` command lines.
#![allow(dead_code)]

use cellweave::contract::{Categorical, CellsTable, Column, Csr, ValueKind};
use cellweave_tests::{run_ok, strs};
use std::path::PathBuf;

/// A linear congruential generator: the same numbers on every machine.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number in `[0, 1)`.
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as f64) / (1u64 << 31) as f64
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next() * n as f64) as usize).min(n - 1)
    }
}

/// A cells table of the dense `n x g` values `dense`: cells `{prefix}0..`, genes
/// `ENSG00000..` named `gene0..`, each cell's batch and `cell_type`.
pub fn cells_table(
    prefix: &str,
    g: usize,
    dense: &[f32],
    batch: &[String],
    types: &[String],
    values: ValueKind,
) -> CellsTable {
    let n = batch.len();
    CellsTable {
        cell_ids: (0..n).map(|i| format!("{prefix}{i}")).collect(),
        batch: Categorical::from_strings(batch),
        obs: vec![(
            "cell_type".into(),
            Column::Cat(Categorical::from_strings(types)),
        )],
        gene_ids: (0..g).map(|j| format!("ENSG{j:05}")).collect(),
        gene_names: (0..g).map(|j| format!("gene{j}")).collect(),
        x: Csr::from_dense(n, g, dense),
        values,
        provenance: Vec::new(),
    }
}

/// A test's inputs in a temporary folder: the cells table and the pairs or counts table
/// a model reads besides it.
pub struct Data {
    pub dir: tempfile::TempDir,
    pub cells: PathBuf,
    pub pairs: PathBuf,
    pub counts: PathBuf,
}

impl Data {
    /// A new temporary folder with the inputs' paths (`cells`, `pairs`, `counts` file
    /// names; nothing written yet).
    pub fn named(cells: &str, pairs: &str, counts: &str) -> Data {
        let dir = tempfile::tempdir().unwrap();
        let at = |n: &str| dir.path().join(n);
        let (cells, pairs, counts) = (at(cells), at(pairs), at(counts));
        Data {
            dir,
            cells,
            pairs,
            counts,
        }
    }

    /// A file or folder in the data's temporary folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The bits of the embedding written to `name`.
    pub fn bits(&self, name: &str) -> Vec<u32> {
        cellweave_tests::embedding_bits(&self.path(name))
    }
}

/// A command line: `fixed`, then `extra`.
pub fn args(fixed: &[&str], extra: &[&str]) -> Vec<String> {
    fixed.iter().chain(extra).map(|x| x.to_string()).collect()
}

/// Run `cellweave-train` with `args`; it must succeed.
pub fn train_ok(args: &[String]) -> std::process::Output {
    run_ok("train", &strs(args))
}
