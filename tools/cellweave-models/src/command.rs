//! What `cellweave-train` and `cellweave-embed` hand to a model: the inputs and outputs
//! of the run ([`TrainRun`], [`EmbedRun`]), the hyperparameters every model shares
//! ([`Hyper`]), and which model a saved model directory holds ([`model_kind`]).
//!
//! Each model adds its own flags as a `clap::Args` struct flattened into the binary, and
//! a `train(run, args, step)` / `embed(run, step)` pair in its `command` module.

use crate::ModelKind;
use cellweave::io::atomic;
use cellweave::{bail, Error, Result, ResultExt};
use std::path::{Path, PathBuf};

pub use crate::engine::card::CARD;

/// Hyperparameters every model has. `None` (the flag not given) means the model's own
/// default; each model resolves them once and records the resolved values in its card.
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Hyper {
    /// Epochs in this call (at least 1) [default: the model's; claire: 80, fewer on large
    /// data so that at most --max-steps steps run, more on small data so that at least
    /// --min-steps run; medl: 500 bounded to 1,500-6,000 steps the same way]
    #[arg(value_parser = cellweave::cli::range::at_least_1, long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Adam learning rate (> 0) [default: the model's; claire: 1e-4]
    #[arg(value_parser = cellweave::cli::range::positive::<f64>, long)]
    pub lr: Option<f64>,
    /// Cells per minibatch (at least 2) [default: the model's; claire: 256 anchors, each
    /// giving two views; the last partial batch is dropped]
    #[arg(value_parser = cellweave::cli::range::at_least_2, long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Adam weight decay (>= 0) [default: the model's; claire: 1e-5, as an L2 term]
    #[arg(value_parser = cellweave::cli::range::non_negative::<f64>, long)]
    pub weight_decay: Option<f64>,
    /// Embedding dimensions (at least 1) [default: the model's; claire: 128]
    #[arg(value_parser = cellweave::cli::range::at_least_1, long)]
    pub latent: Option<usize>,
    /// Dropout probability (0 to 1, below 1) [default: the model's; claire: 0.3 after the
    /// first two layers]
    #[arg(value_parser = cellweave::cli::range::fraction_below_1::<f32>, long)]
    pub dropout: Option<f32>,
}

/// The inputs and outputs of one `cellweave-train` run, whatever the model.
#[derive(Debug, Clone)]
pub struct TrainRun {
    /// The cells table (log-normalized values of the selected genes).
    pub cells: PathBuf,
    /// Seed pairs and KNN lists of the same cells (models that use pairs).
    pub pairs: Option<PathBuf>,
    /// Raw counts of the same cells (models with a count likelihood).
    pub counts: Option<PathBuf>,
    /// Model directory to write.
    pub model_dir: PathBuf,
    /// Embedding table to write.
    pub embedding: PathBuf,
    /// Per-epoch training log to write as well.
    pub log: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// The seed of every random draw.
    pub seed: u64,
    /// Continue the training state of this model directory.
    pub init: Option<PathBuf>,
    /// Continue an interrupted run of `model_dir` from its last checkpoint.
    pub resume: bool,
    /// Checkpoint every N epochs (0: only at the end).
    pub checkpoint_every: usize,
    /// Per-cell label column for reports (never used for training unless a model says so).
    pub labels: String,
    /// Per-cell batch column.
    pub batch_key: String,
    /// Stop (as if killed) after this many global epochs: for testing crash recovery.
    pub stop_after: Option<usize>,
    /// The hyperparameters every model shares (`None`: the model's default).
    pub hyper: Hyper,
}

impl TrainRun {
    /// The pairs table, which `model` needs.
    pub fn require_pairs(&self, model: ModelKind) -> Result<&Path> {
        required(&self.pairs, "pairs", || {
            format!(
                "--model {} trains on seed pairs: give --pairs PAIRS.arrow (cellweave-pairs)",
                model.name()
            )
        })
    }

    /// The raw counts table, which `model` needs.
    pub fn require_counts(&self, model: ModelKind) -> Result<&Path> {
        required(&self.counts, "counts", || {
            format!(
                "--model {} models raw counts: give --counts FILTERED.arrow (the cellweave-filter output of the same cells)",
                model.name()
            )
        })
    }

    /// Refuse an output (the embedding, the log, each of `more`) that is one of `inputs`.
    pub fn check_outputs(&self, inputs: &[&Path], more: &[Option<&Path>]) -> Result<()> {
        atomic::check_not_input(&self.embedding, inputs)?;
        for p in [self.log.as_deref()].iter().chain(more).flatten() {
            atomic::check_not_input(p, inputs)?;
        }
        Ok(())
    }

    /// Remove the temporaries that killed runs left beside the outputs (model directory,
    /// embedding, log).
    pub fn clean_stale(&self) -> Result<()> {
        for out in [
            Some(&self.model_dir),
            Some(&self.embedding),
            self.log.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            crate::engine::checkpoint::clean_stale(out)?;
        }
        Ok(())
    }

    /// Every input file of the run.
    pub fn inputs(&self) -> Vec<&Path> {
        let mut v = vec![self.cells.as_path()];
        v.extend(self.pairs.as_deref());
        v.extend(self.counts.as_deref());
        v.extend(self.init.as_deref());
        v
    }
}

/// The input file `input`, or the error `message()` naming the field `field` when it was
/// not given.
fn required<'a>(
    input: &'a Option<PathBuf>,
    field: &str,
    message: impl FnOnce() -> String,
) -> Result<&'a Path> {
    input
        .as_deref()
        .ok_or_else(|| Error::new(message()).field(field))
}

/// The inputs and outputs of one `cellweave-embed` run, whatever the model.
#[derive(Debug, Clone)]
pub struct EmbedRun {
    /// Cells table on the model's scale.
    pub cells: PathBuf,
    /// Model directory (`cellweave-train -o`).
    pub model_dir: PathBuf,
    /// Table to write.
    pub output: PathBuf,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Largest tolerated fraction of the model's genes missing from the cells.
    pub max_missing: f64,
}

/// Which model a model directory holds (the `model` field of its card).
pub fn model_kind(dir: &Path) -> Result<ModelKind> {
    let p = dir.join(CARD);
    if !p.exists() {
        bail!(
            "{}: not a cellweave model directory (no {CARD}; an interrupted training leaves only its checkpoint: rerun with --resume)",
            dir.display()
        );
    }
    #[derive(serde::Deserialize)]
    struct Head {
        model: String,
    }
    let text = std::fs::read_to_string(&p).at(&p)?;
    let head: Head = serde_yaml::from_str(&text)
        .map_err(|e| Error::new(format!("invalid model card ({e})")).file(&p))?;
    <ModelKind as clap::ValueEnum>::from_str(&head.model, false).map_err(|_| {
        let known: Vec<&str> = <ModelKind as clap::ValueEnum>::value_variants()
            .iter()
            .map(|m| m.name())
            .collect();
        Error::new(format!(
            "unknown model '{}' (expected one of {}; a newer cellweave may know it)",
            head.model,
            known.join(", ")
        ))
        .file(&p)
        .field("model")
    })
}
