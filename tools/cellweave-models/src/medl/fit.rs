//! A whole MEDL training run: inputs checked, a new or resumed training state, the
//! engine's epochs with checkpoints, and the outputs (the model directory, put in place in
//! one step after the FE and RE embeddings and the log are written).

use candle_core::Device;
use cellweave::contract::{Categorical, CellsTable, EmbeddingTable, Step, ValueKind};
use cellweave::io::rows::Rows;
use cellweave::{bail, info, Error, Result, ResultExt};
use std::path::{Path, PathBuf};

use super::model::{self, Card, Genes, Head, StateFile, Summary};
use super::net::{Arch, Medl};
use super::scaling::Scaling;
use super::train::{self, log_frame, MedlParams, Optimisers, Progress, Run};
use crate::engine::checkpoint::{self, Checkpoints};
use crate::engine::finish::Finish;
use crate::engine::state;
use crate::engine::{self, Schedule};
use crate::CandleExt;

/// The files one run writes.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// Model directory to write.
    pub model_dir: PathBuf,
    /// The FE latent (the integrated embedding).
    pub embedding: PathBuf,
    /// The RE latent (batch-specific), if asked for.
    pub re_embedding: Option<PathBuf>,
    /// Where the training log is asked for as well.
    pub log: Option<PathBuf>,
}

/// How the run goes beyond its parameters.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The per-cell batch column.
    pub batch_key: String,
    /// Continue from the last checkpoint of the model directory.
    pub resume: bool,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Checkpoint every N epochs (0: only at the end).
    pub checkpoint_every: usize,
    /// Stop (as if killed) after this global epoch.
    pub stop_after: Option<usize>,
}

/// The batch of every cell from the column `key`; an error when a cell has none.
pub fn batches_of(cells: &CellsTable, key: &str) -> Result<Categorical> {
    let Some(c) = cellweave::integrate::pairs::labels(cells, key) else {
        return Err(Error::new(format!("no per-cell column '{key}'")).field("batch-key"));
    };
    let missing = c
        .codes
        .iter()
        .filter(|&&x| x == Categorical::MISSING)
        .count();
    if missing > 0 {
        return Err(Error::new(format!(
            "{missing} cell(s) have no value in '{key}': every cell needs a batch"
        ))
        .field("batch-key"));
    }
    if c.categories.is_empty() {
        bail!("no batches in '{key}'");
    }
    Ok(c)
}

/// Check the cells table a MEDL model can train on.
pub fn check_cells(cells: &CellsTable) -> Result<()> {
    if cells.n_genes() == 0 {
        bail!("no genes");
    }
    if cells.n_cells() < 2 {
        bail!("{} cell(s): MEDL needs at least 2", cells.n_cells());
    }
    if matches!(cells.values, ValueKind::Counts | ValueKind::Normalized) {
        return Err(Error::new(format!(
            "{} values: MEDL trains on log-normalized values (run cellweave-normalize first)",
            cells.values.as_str()
        ))
        .field("values"));
    }
    Ok(())
}

/// The training state to start from: a checkpoint (or finished model directory) when
/// resuming and there is one, else new weights.
#[allow(clippy::too_many_arguments)]
fn start(
    cells: &CellsTable,
    arch: &Arch,
    scaling: Scaling,
    batches: &[String],
    params: &MedlParams,
    o: &RunOptions,
    dir: &Path,
    ckpt: &Checkpoints,
    dev: &Device,
) -> Result<(Medl, Optimisers, Progress)> {
    if let Some(from) = state::resume_from(ckpt, dir, o.resume, Some(model::STATE_JSON))? {
        let sj = from.join(model::STATE_JSON);
        let s: StateFile = state::read_json(&from)?;
        if s.cells_fingerprint != cells.fingerprint() || s.batches != batches {
            return Err(Error::new(
                "the checkpoint was trained on other cells or batches: rerun without --resume",
            )
            .file(&sj));
        }
        if s.params != *params || s.arch != *arch || s.scaling != scaling {
            return Err(Error::new(format!(
                "the checkpoint was written with other parameters ({}); rerun with the same ones or without --resume",
                serde_json::to_string(&s.params).unwrap_or_default()
            ))
            .file(&sj));
        }
        let m = model::load_weights(arch, &from.join(model::WEIGHTS), dev)?;
        let mut opt = Optimisers::new(&m, params.adam())?;
        let st = from.join(model::STATE);
        opt.load(&crate::engine::checkpoint::load_tensors(&st)?)
            .at(&st)?;
        state::say_resuming(&s.progress);
        return Ok((m, opt, s.progress));
    }
    let (m, opt) = train::fresh(arch, params, dev)?;
    Ok((m, opt, Progress::new(params.epochs)))
}

/// Write a run's training state (weights, optimisers, `state.json`) into the folder `d`.
fn write_state(r: &Run, fingerprint: &str, batches: &[String], d: &Path) -> Result<()> {
    let tensors = r.model.tensors().ce()?;
    crate::engine::checkpoint::save_tensors(&d.join(model::WEIGHTS), &tensors)?;
    crate::engine::checkpoint::save_tensors(&d.join(model::STATE), &r.opt.state()?)?;
    let s = StateFile {
        cells_fingerprint: fingerprint.to_string(),
        params: r.params.clone(),
        arch: r.model.arch.clone(),
        scaling: r.scaling,
        batches: batches.to_vec(),
        progress: r.progress.clone(),
    };
    crate::engine::checkpoint::write_json(&d.join(model::STATE_JSON), &s)
}

/// Train MEDL on `cells` and write the outputs. Returns false when the run stopped at
/// `stop_after` (only checkpoints are on disk then).
pub fn train_cells(
    cells: &CellsTable,
    params: &MedlParams,
    o: &RunOptions,
    out: &Outputs,
    step: &Step,
) -> Result<bool> {
    train_rows(cells, &cells.x, params, o, out, step)
}

/// [`train_cells`] on the expression rows `x` of `cells` (e.g. read from the memory-mapped
/// file: `cells.x` is not read).
pub fn train_rows(
    cells: &CellsTable,
    x: &dyn Rows,
    params: &MedlParams,
    o: &RunOptions,
    out: &Outputs,
    step: &Step,
) -> Result<bool> {
    params.validate()?;
    check_cells(cells)?;
    let dev = crate::device(&o.device)?;
    let batch = batches_of(cells, &o.batch_key)?;
    let scaling = Scaling::of(x)?;
    let arch = Arch::new(cells.n_genes(), params.latent, batch.categories.len());
    for p in [Some(&out.model_dir), Some(&out.embedding)]
        .into_iter()
        .chain([out.re_embedding.as_ref(), out.log.as_ref()])
        .flatten()
    {
        checkpoint::clean_stale(p)?;
    }
    let ckpt = Checkpoints::of(&out.model_dir, "medl");
    let (m, opt, progress) = start(
        cells,
        &arch,
        scaling,
        &batch.categories,
        params,
        o,
        &out.model_dir,
        &ckpt,
        &dev,
    )?;
    if !o.resume || progress.epoch == 0 {
        // A new run discards the checkpoints of an earlier one.
        ckpt.remove_all()?;
    }
    info!(
        "medl: {} cells x {} genes, {} batches; epochs {}..{} of {} minibatches of {}",
        cells.n_cells(),
        cells.n_genes(),
        arch.n_batches,
        progress.epoch + 1,
        progress.end_epoch,
        train::batching(cells.n_cells(), params.batch_size).0,
        train::batching(cells.n_cells(), params.batch_size).1,
    );
    let fingerprint = cells.fingerprint();
    let cats = batch.categories.clone();
    let save = move |r: &Run, d: &Path| write_state(r, &fingerprint, &cats, d);
    let mut run = Run::new(
        m,
        opt,
        params.clone(),
        progress,
        x,
        &batch.codes,
        scaling,
        dev.clone(),
    );
    run.ckpt = Some(ckpt.clone());
    run.save = Some(&save);
    let schedule = Schedule::remaining(&run.progress, o.checkpoint_every, o.stop_after, "medl");
    if !engine::fit(&mut run, &schedule)?.complete {
        return Err(engine::stopped_as_asked(run.progress.epoch));
    }
    let card = Card {
        head: Head::of::<Card>(),
        architecture: arch.clone(),
        values: cells.values,
        scaling,
        batch_key: o.batch_key.clone(),
        batches: batch.categories.clone(),
        genes: Genes::of(cells),
        hyperparameters: params.clone(),
        training: Summary::new(
            cells,
            params.seed,
            &run.progress,
            run.progress.final_loss(),
            &dev,
        ),
    };
    let log = log_frame(&run.progress, cells.fingerprint(), step);
    let fe = model::fe_latent(&mut run.model, x, &scaling, &dev)?;
    let mut embeddings = vec![(
        out.embedding.as_path(),
        EmbeddingTable::of_cells(cells, "medl", arch.latent, fe, step),
    )];
    if let Some(p) = &out.re_embedding {
        let re = model::re_latent(&mut run.model, x, &batch.codes, &scaling, &dev)?;
        embeddings.push((
            p.as_path(),
            EmbeddingTable::of_cells(cells, "medl_re", arch.latent, re, step),
        ));
    }
    Finish {
        model: "medl",
        model_dir: &out.model_dir,
        checkpoints: &ckpt,
        weights: None,
        log: &log,
        log_out: out.log.as_deref(),
        embeddings,
        progress: &run.progress,
        note: "",
        final_loss: card.training.final_loss,
    }
    .write(&card, |staged| save(&run, staged), |_| Ok(()), || Ok(()))?;
    Ok(true)
}
