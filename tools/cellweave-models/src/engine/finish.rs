//! The end of a finished run, the same for every model: the model directory assembled
//! beside its place (training state, weights, training log, the model's own files, card),
//! the embeddings and the other outputs written, the directory renamed into place, the
//! checkpoints removed, and one summary line on stderr.

use cellweave::contract::{EmbeddingTable, Frame};
use cellweave::io::table;
use cellweave::{info, Result};
use std::path::Path;

use super::checkpoint::{save_tensors, write_model_dir, Checkpoints};
use super::state::{RunProgress, Tensors};

/// The weights of a model directory.
pub const WEIGHTS: &str = "model.safetensors";
/// The training log of a model directory.
pub const TRAINING_LOG: &str = "training_log.arrow";

/// What a finished run writes, and the figures of its summary line.
pub struct Finish<'a> {
    /// The model's name (the summary line starts with it).
    pub model: &'static str,
    /// The model directory.
    pub model_dir: &'a Path,
    /// The run's checkpoints (removed once the model directory is in place).
    pub checkpoints: &'a Checkpoints,
    /// The tensors of `model.safetensors` (`None`: the training state writes them).
    pub weights: Option<&'a Tensors>,
    /// The training log (`training_log.arrow`, and `log_out` when given).
    pub log: &'a Frame,
    /// Where the training log is asked for as well.
    pub log_out: Option<&'a Path>,
    /// The embedding tables and where each goes, in order.
    pub embeddings: Vec<(&'a Path, EmbeddingTable)>,
    /// Where the run ended (epochs, steps, seconds of training).
    pub progress: &'a dyn RunProgress,
    /// Said after the epochs in the summary line (`" (stopped on a plateau)"`, or empty).
    pub note: &'a str,
    /// The last epoch's loss.
    pub final_loss: f64,
}

impl Finish<'_> {
    /// Write everything: into the staged model directory the training state (`state`),
    /// the weights, the training log, the model's own files (`files`) and `card`; then the
    /// embeddings, the training log copy and the model's other outputs (`others`); then
    /// the directory is put in place, the checkpoints removed and the summary line said.
    pub fn write<C: serde::Serialize>(
        self,
        card: &C,
        state: impl FnOnce(&Path) -> Result<()>,
        files: impl FnOnce(&Path) -> Result<()>,
        others: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        write_model_dir(self.model_dir, |staged| {
            state(staged)?;
            if let Some(w) = self.weights {
                save_tensors(&staged.join(WEIGHTS), w)?;
            }
            table::write_frame(&staged.join(TRAINING_LOG), self.log)?;
            files(staged)?;
            super::card::write(staged, card)?;
            for (path, emb) in &self.embeddings {
                table::write_embedding(path, emb)?;
            }
            if let Some(l) = self.log_out {
                super::write_log(l, self.log)?;
            }
            others()
        })?;
        self.checkpoints.remove_all()?;
        info!(
            "{}: {} epochs{}, {} steps, final loss {:.4}, {:.1} s of training; model in {}",
            self.model,
            self.progress.epoch(),
            self.note,
            self.progress.steps(),
            self.final_loss,
            self.progress.seconds(),
            self.model_dir.display()
        );
        Ok(())
    }
}
