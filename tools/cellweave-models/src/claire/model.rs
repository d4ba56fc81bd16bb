//! The model directory: weights, model card, training state; and applying a saved model
//! to a cells table.
//!
//! ```text
//! MODEL_DIR/            assembled beside its place and renamed into it whole once a run
//!                        has succeeded (checkpoints live in .MODEL_DIR.checkpoint/, see
//!                        crate::engine::checkpoint and schemas/model.md)
//!   card.yaml            model card
//!   model.safetensors    weights of the embedding's encoder (momentum by default, or query),
//!                        torch names encoder.{0,3,6}.{weight,bias}
//!   state.safetensors    full training state: both encoders, queue, Adam moments
//!   state.json           progress (epochs done, schedule, log so far) and parameters
//!   refined_pairs.arrow  the refined seed pairs (when refinement ran in this model's history)
//!   training_log.arrow   per-epoch loss (TrainingLog table)
//! ```

use candle_core::{Device, Tensor};
use cellweave::contract::{CellsTable, Csr, ValueKind};
use cellweave::io::rows::Rows;
use cellweave::{info, Error, Result, ResultExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::encoder::Encoder;
use super::CandleExt;
use crate::engine::card;
use crate::engine::checkpoint::{load_tensors, save_tensors};

pub use crate::engine::card::CARD;
pub use crate::engine::finish::{TRAINING_LOG, WEIGHTS};
pub use crate::engine::state::{STATE, STATE_JSON};
/// File name of the refined seed pairs in the model directory.
pub const REFINED_PAIRS: &str = "refined_pairs.arrow";
/// The model card format version.
pub const CARD_VERSION: u32 = 1;

/// The model card (YAML): what the model is, what it was trained on and how.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Card {
    /// Always `claire`.
    pub model: String,
    /// Version of this card's layout ([`CARD_VERSION`]).
    pub card_version: u32,
    /// cellweave version that trained it.
    pub cellweave_version: String,
    /// The encoder's shape.
    pub architecture: Architecture,
    /// Scale the inputs must be on (as the training cells).
    pub values: ValueKind,
    /// Number of input genes `G`.
    pub n_genes: usize,
    /// The input genes' ids, in the encoder's input order.
    pub gene_ids: Vec<String>,
    /// The input genes' names, in the same order.
    pub gene_names: Vec<String>,
    /// Every training parameter, as the run resolved them.
    pub hyperparameters: serde_json::Value,
    /// What the training did.
    pub training: TrainingSummary,
}

/// The encoder's shape as the card records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Architecture {
    /// Layer widths, input first.
    pub widths: Vec<usize>,
    /// The activation after every layer (`relu`).
    pub activation: String,
    /// Dropout probability after the first two layers in training.
    pub dropout: f32,
    /// What the output is (`l2-normalized`: unit-length rows).
    pub output: String,
}

/// The `training` section of the card: the data and the course of the training.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainingSummary {
    /// Cells in the training table.
    pub cells: usize,
    /// Fingerprint of the training cells table.
    pub cells_fingerprint: String,
    /// The `--seed` of the run.
    pub seed: u64,
    /// Epochs done in this model's whole history (continued runs included).
    pub epochs: usize,
    /// Optimiser steps of this run (with those before the interruption of a resumed run;
    /// not those of an `--init` model).
    pub steps: u64,
    /// Mean loss of the last logged epoch (NaN before any).
    pub final_loss: f64,
    /// Distinct seed pairs the training started from.
    pub seed_pairs: usize,
    /// Seed pairs kept by refinement (absent when no refinement ran).
    pub refined_seed_pairs: Option<usize>,
    /// Why the seeds looked unreliable, one line each (absent when they did not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seed_advice: Vec<String>,
    /// Cells in at least one seed pair (the anchors the views are drawn from).
    pub training_cells: usize,
    /// Training time of this run in seconds (counted as `steps`).
    pub seconds: f64,
    /// The candle device it trained on (`Cpu`, `Cuda { gpu_id: 0 }`, ...).
    pub device: String,
    /// Encoder whose weights are model.safetensors: momentum or query.
    #[serde(default)]
    pub encoder: String,
}

/// A loaded model: the encoder and its card.
pub struct Model {
    /// The model card.
    pub card: Card,
    /// The encoder that gives the embedding.
    pub encoder: Encoder,
}

crate::engine::card::model_card!(Card, "claire", "CLAIRE", CARD_VERSION);

/// Save an encoder (the one that gives the embedding) as the model weights.
pub fn save_weights(dir: &Path, encoder: &Encoder) -> Result<()> {
    let mut t = HashMap::new();
    for (n, v) in encoder.named("encoder.") {
        t.insert(n, v.to_device(&Device::Cpu).ce()?);
    }
    save_tensors(&dir.join(WEIGHTS), &t)
}

/// Load a model directory onto `device`.
pub fn load(dir: &Path, device: &Device) -> Result<Model> {
    let card: Card = card::read(dir)?;
    let wpath = dir.join(WEIGHTS);
    let t = load_tensors(&wpath)?;
    let encoder = Encoder::from_tensors(&t, "encoder.", device)
        .ce()
        .at(&wpath)?;
    if encoder.n_genes() != card.n_genes {
        return Err(Error::new(format!(
            "the weights take {} genes but the card lists {}",
            encoder.n_genes(),
            card.n_genes
        ))
        .file(&wpath));
    }
    Ok(Model { card, encoder })
}

/// Eval-mode embedding of every row of `x` (dense chunks of `chunk` rows).
pub fn embed_rows(encoder: &Encoder, x: &dyn Rows, device: &Device) -> Result<Vec<f32>> {
    const CHUNK: usize = 1024;
    let n = x.n_rows();
    let d = encoder.latent();
    let mut out = Vec::with_capacity(n * d);
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let rows: Vec<usize> = (start..end).collect();
        let dense = x.to_dense_rows(&rows);
        let t = Tensor::from_vec(dense, (end - start, x.n_cols()), device).ce()?;
        let e = encoder.forward(&t).ce()?.to_device(&Device::Cpu).ce()?;
        out.extend(e.flatten_all().ce()?.to_vec1::<f32>().ce()?);
        start = end;
    }
    Ok(out)
}

/// How the genes of a cells table were matched to the model's.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneAlignment {
    /// For each model gene, its column in the cells table.
    pub columns: Vec<Option<usize>>,
    /// Number of model genes absent from the cells table (read as 0).
    pub missing: usize,
    /// "id" or "name": what matched.
    pub by: &'static str,
}

/// Match the model's genes to a cells table's, by id (or by name when no id matches).
pub fn align_genes(card: &Card, cells: &CellsTable) -> GeneAlignment {
    align_gene_lists(&card.gene_ids, &card.gene_names, cells)
}

/// Match a model's genes (`gene_ids`, `gene_names`) to a cells table's, by id (or by name
/// when no id matches); any model's card lists its genes so.
pub fn align_gene_lists(
    gene_ids: &[String],
    gene_names: &[String],
    cells: &CellsTable,
) -> GeneAlignment {
    let by_key = |model: &[String], table: &[String]| -> Vec<Option<usize>> {
        let idx: HashMap<&str, usize> = table
            .iter()
            .enumerate()
            .map(|(i, g)| (g.as_str(), i))
            .collect();
        model.iter().map(|g| idx.get(g.as_str()).copied()).collect()
    };
    let ids = by_key(gene_ids, &cells.gene_ids);
    let found_ids = ids.iter().filter(|c| c.is_some()).count();
    let names = by_key(gene_names, &cells.gene_names);
    let found_names = names.iter().filter(|c| c.is_some()).count();
    let (columns, by) = if found_ids == 0 && found_names > 0 {
        (names, "name")
    } else {
        (ids, "id")
    };
    let missing = columns.iter().filter(|c| c.is_none()).count();
    GeneAlignment {
        columns,
        missing,
        by,
    }
}

/// The cells' expression re-indexed onto the model's genes (missing genes are zero).
pub fn aligned_matrix(cells: &CellsTable, a: &GeneAlignment) -> Csr {
    aligned_rows(&cells.x, a).unwrap_or_else(|| cells.x.clone())
}

/// The rows `x` re-indexed onto the model's genes (missing genes are zero); `None` when
/// the model's genes are the table's, in order (use `x` as it is).
pub fn aligned_rows(x: &dyn Rows, a: &GeneAlignment) -> Option<Csr> {
    if a.missing == 0
        && a.columns.iter().enumerate().all(|(i, c)| *c == Some(i))
        && x.n_cols() == a.columns.len()
    {
        return None;
    }
    let mut to_model = vec![u32::MAX; x.n_cols()];
    for (m, c) in a.columns.iter().enumerate() {
        if let Some(c) = c {
            to_model[*c] = m as u32;
        }
    }
    let mut out = Csr::empty(a.columns.len());
    let mut row: Vec<(u32, f32)> = Vec::new();
    for r in 0..x.n_rows() {
        let (idx, val) = x.row(r);
        row.clear();
        row.extend(idx.iter().zip(val).filter_map(|(&c, &v)| {
            let m = to_model[c as usize];
            (m != u32::MAX).then_some((m, v))
        }));
        row.sort_unstable_by_key(|p| p.0);
        for &(c, v) in &row {
            out.indices.push(c);
            out.data.push(v);
        }
        out.indptr.push(out.indices.len() as u64);
    }
    Some(out)
}

/// Check a cells table can be embedded by a model (its genes: ids, names; the values it
/// takes) and return the table's matrix on the model's genes ([`alignment_for`]).
pub fn prepare_cells_for(
    gene_ids: &[String],
    gene_names: &[String],
    values: ValueKind,
    cells: &CellsTable,
    cells_path: &Path,
    max_missing: f64,
) -> Result<Csr> {
    let a = alignment_for(gene_ids, gene_names, values, cells, cells_path, max_missing)?;
    Ok(aligned_matrix(cells, &a))
}

/// Check a cells table can be embedded by a model (its values, the share of the model's
/// genes it lacks: at most `max_missing`) and match the genes.
pub fn alignment_for(
    gene_ids: &[String],
    gene_names: &[String],
    values: ValueKind,
    cells: &CellsTable,
    cells_path: &Path,
    max_missing: f64,
) -> Result<GeneAlignment> {
    let n_genes = gene_ids.len();
    if cells.values != values {
        return Err(Error::new(format!(
            "values are {} but the model was trained on {} values (run the same normalization first)",
            cells.values.as_str(),
            values.as_str()
        ))
        .file(cells_path)
        .field("values"));
    }
    let a = align_gene_lists(gene_ids, gene_names, cells);
    let frac = a.missing as f64 / n_genes.max(1) as f64;
    if frac > max_missing {
        return Err(Error::new(format!(
            "{} of the model's {} genes are missing (more than {:.0}%; matched by {}); is this the same organism and gene annotation?",
            a.missing,
            n_genes,
            max_missing * 100.0,
            a.by
        ))
        .file(cells_path)
        .field("genes"));
    }
    if a.missing > 0 {
        info!(
            "warning: {} of the model's {} genes are not in {} (set to 0; matched by {})",
            a.missing,
            n_genes,
            cells_path.display(),
            a.by
        );
    }
    Ok(a)
}

/// Paths of a model directory's files.
pub fn path(dir: &Path, file: &str) -> PathBuf {
    dir.join(file)
}
