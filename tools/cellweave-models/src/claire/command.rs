//! What `cellweave-train` and `cellweave-embed` do, given their parsed options.

use cellweave::contract::{Categorical, EmbeddingTable, PairsTable, Step, ValueKind};
use cellweave::io::{atomic, table};
use cellweave::{bail, info, Error, Result, ResultExt};
use std::path::{Path, PathBuf};

use super::model;
use super::train::{Start, TrainParams, Trainer};
use crate::engine::checkpoint;

/// Options of `cellweave-train`.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub cells: PathBuf,
    pub pairs: PathBuf,
    pub model_dir: PathBuf,
    pub embedding: PathBuf,
    pub params: TrainParams,
    pub init: Option<PathBuf>,
    pub resume: bool,
    pub checkpoint_every: usize,
    pub log: Option<PathBuf>,
    pub device: String,
    /// Per-cell label column for the seed-accuracy report (never used otherwise).
    pub labels: String,
    /// Stop (as if killed) after this many global epochs: for testing crash recovery.
    pub stop_after: Option<usize>,
}

fn seed_accuracy(t: &PairsTable, labels: &Categorical) -> String {
    let (same, total) = cellweave::integrate::pairs::seed_accuracy(t, labels);
    if total == 0 {
        "n/a".into()
    } else {
        format!("{:.3} ({same}/{total})", same as f64 / total as f64)
    }
}

/// Train a CLAIRE model and write the model directory, the embedding and the log.
pub fn train(o: &TrainOptions, step: &Step) -> Result<()> {
    let inputs = [o.cells.as_path(), o.pairs.as_path()];
    atomic::check_not_input(&o.embedding, &inputs)?;
    if let Some(l) = &o.log {
        atomic::check_not_input(l, &inputs)?;
    }
    if o.resume && o.init.is_some() {
        return Err(Error::new(
            "--resume continues this model directory's own run; it cannot be combined with --init",
        )
        .field("resume"));
    }
    let device = crate::device(&o.device)?;
    let cells = table::read_cells(&o.cells)?;
    let pairs = table::read_pairs(&o.pairs)?;
    pairs.check_cells(&cells.fingerprint()).at(&o.pairs)?;
    if cells.n_genes() == 0 {
        return Err(Error::new("no genes").file(&o.cells));
    }
    if cells.values == ValueKind::Counts {
        return Err(Error::new(
            "raw counts: CLAIRE trains on log-normalized values (run cellweave-normalize first)",
        )
        .file(&o.cells)
        .field("values"));
    }
    let labels = cellweave::integrate::pairs::labels(&cells, &o.labels);
    let start = match (&o.init, o.resume) {
        (Some(d), _) => Start::Init(d.clone()),
        (None, true) => Start::Resume,
        (None, false) => Start::Fresh,
    };
    // Temporaries that killed runs left beside this run's outputs.
    for out in [Some(&o.model_dir), Some(&o.embedding), o.log.as_ref()]
        .into_iter()
        .flatten()
    {
        checkpoint::clean_stale(out)?;
    }
    let mut trainer = Trainer::new(
        &cells,
        &pairs,
        o.params.clone(),
        &o.model_dir,
        start,
        device,
    )
    .at(&o.pairs)?;
    info!(
        "claire: {} cells x {} genes, {} seed pairs, {} training cells; epochs {}..{} of batch {}{}",
        cells.n_cells(),
        cells.n_genes(),
        trainer.progress.seeds,
        trainer.training_cells(),
        trainer.progress.epoch + 1,
        trainer.progress.end_epoch,
        o.params.batch_size.min(trainer.training_cells()),
        match trainer.progress.refine_at {
            Some(e) if !trainer.progress.refined => format!(", refinement after epoch {e}"),
            _ => String::new(),
        }
    );
    let threshold = o.params.refine_threshold;
    let mut refiner = |p: &PairsTable, emb: &EmbeddingTable| -> Result<PairsTable> {
        let (out, rep) = cellweave::integrate::pairs::refine(p, &emb.data, emb.dim, threshold)?;
        if let Some(g) = &rep.gmm {
            info!(
                "refinement: seed similarity mixture low {:.3} (weight {:.2}), high {:.3} (weight {:.2})",
                g.means[0], g.weights[0], g.means[1], g.weights[1]
            );
        }
        info!(
            "refinement: seeds kept {} of {}",
            rep.seeds_after, rep.seeds_before
        );
        if let Some(l) = &labels {
            info!(
                "refinement: seed accuracy {} -> {}",
                seed_accuracy(p, l),
                seed_accuracy(&out, l)
            );
        }
        Ok(out)
    };
    let complete = trainer.run(&mut refiner, step, o.checkpoint_every, o.stop_after)?;
    if !complete {
        // As if killed: only the periodic checkpoints are on disk.
        bail!(
            "stopped after epoch {} as asked (--stop-after-epoch); continue from the last checkpoint with --resume",
            trainer.progress.epoch
        );
    }
    // The model directory is assembled beside its final place and put there in one
    // step after every other output is written: a run that fails leaves the previous
    // model directory as it was.
    let staged = cellweave::io::atomic::temp_sibling(&o.model_dir);
    if staged.exists() {
        std::fs::remove_dir_all(&staged).at(&staged)?;
    }
    std::fs::create_dir_all(&staged).at(&o.model_dir)?;
    let written = (|| -> Result<()> {
        let emb = trainer.finish(&staged, step)?;
        table::write_embedding(&o.embedding, &emb)?;
        if let Some(l) = &o.log {
            crate::engine::write_log(l, &trainer.log_frame(step))?;
        }
        checkpoint::commit_dir(&staged, &o.model_dir)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e);
    }
    trainer.checkpoints().remove_all()?;
    let last = trainer
        .progress
        .log
        .last()
        .map(|r| r.loss)
        .unwrap_or(f64::NAN);
    info!(
        "claire: {} epochs, {} steps, final loss {last:.4}, {:.1} s of training; model in {}",
        trainer.progress.epoch,
        trainer.progress.steps,
        trainer.progress.seconds,
        o.model_dir.display()
    );
    Ok(())
}

/// Options of `cellweave-embed`.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    pub cells: PathBuf,
    pub model_dir: PathBuf,
    pub output: PathBuf,
    pub device: String,
    /// Largest tolerated fraction of the model's genes missing from the cells.
    pub max_missing: f64,
}

/// Apply a saved model to a cells table and write the embedding.
pub fn embed(o: &EmbedOptions, step: &Step) -> Result<()> {
    atomic::check_not_input(&o.output, &[o.cells.as_path()])?;
    if !(0.0..=1.0).contains(&o.max_missing) {
        return Err(Error::new(format!(
            "{} is not a fraction (expected 0..1)",
            o.max_missing
        ))
        .field("max-missing"));
    }
    let device = crate::device(&o.device)?;
    let m = model::load(&o.model_dir, &device)?;
    let cells = table::read_cells(&o.cells)?;
    let x = model::prepare_cells(&m.card, &cells, &o.cells, o.max_missing)?;
    let data = model::embed_rows(&m.encoder, &x, &device)?;
    let mut provenance = cells.provenance.clone();
    provenance.push(step.clone());
    let emb = EmbeddingTable {
        name: m.card.model.clone(),
        cell_ids: cells.cell_ids.clone(),
        obs: EmbeddingTable::obs_from_cells(&cells),
        dim: m.encoder.latent(),
        data,
        provenance,
    };
    table::write_embedding(&o.output, &emb)?;
    info!(
        "embedded {} cells with {} into {}",
        cells.n_cells(),
        display(&o.model_dir),
        display(&o.output)
    );
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
