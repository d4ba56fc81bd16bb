//! Shared by the train tests: the random numbers and the cells tables of the synthetic
//! data sets, a test's temporary folder of inputs, and `cellweave-train` command lines.
#![allow(dead_code)]

use cellweave::contract::{Categorical, CellsTable, Column, Csr, EmbeddingTable, ValueKind};
use cellweave::io::table::read_embedding;
use cellweave_tests::{run_ok, s, strs};
use std::path::{Path, PathBuf};

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

/// Synthetic counts of 3 cell types: cell `i` is of type `T{i % 3}` and in batch
/// `names[(i / 3) % names.len()]`; gene `j` has rate 6 in the cells of type `j % 3` (0.5
/// elsewhere) times `batch_effect(b, j)` in batch `b`, and each count is
/// `floor(2 x rate x u)`, `u` uniform from `Lcg(seed)`. The dense `n x g` counts, each
/// cell's batch and type.
pub fn three_types(
    (n, g): (usize, usize),
    seed: u64,
    names: &[&str],
    batch_effect: impl Fn(usize, usize) -> f64,
) -> (Vec<f32>, Vec<String>, Vec<String>) {
    let mut r = Lcg(seed);
    let mut dense = vec![0f32; n * g];
    for i in 0..n {
        let (t, b) = (i % 3, (i / 3) % names.len());
        for j in 0..g {
            let base = if j % 3 == t { 6.0 } else { 0.5 };
            let rate = base * batch_effect(b, j);
            dense[i * g + j] = (rate * 2.0 * r.next()).floor() as f32;
        }
    }
    let batch = (0..n).map(|i| names[(i / 3) % names.len()].to_string());
    let types = (0..n).map(|i| format!("T{}", i % 3));
    (dense, batch.collect(), types.collect())
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

    /// A `cellweave-train` command line: the cells table, `inputs` (the model and the table
    /// it reads besides the cells), `-o MODEL --embedding EMB` in the data's folder, the
    /// test's `options` (one string, split at spaces), then `extra`.
    pub fn train_args(
        &self,
        inputs: &[&str],
        (model, emb): (&str, &str),
        options: &str,
        extra: &[&str],
    ) -> Vec<String> {
        let (model, emb) = (self.path(model), self.path(emb));
        let outputs = ["-o", s(&model), "--embedding", s(&emb)];
        let head = [&[s(&self.cells)][..], inputs, &outputs].concat();
        let options: Vec<&str> = options.split_whitespace().collect();
        args(&[&head[..], &options].concat(), extra)
    }

    /// Run `cellweave-embed` on `input` with the model folder `model` into `out` (all in
    /// the data's folder but `input`); it must succeed. The embedding it wrote.
    pub fn embed(&self, input: &Path, model: &str, out: &str) -> EmbeddingTable {
        let (model, out) = (self.path(model), self.path(out));
        run_ok("embed", &[s(input), "--model", s(&model), "-o", s(&out)]);
        read_embedding(&out).unwrap()
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
