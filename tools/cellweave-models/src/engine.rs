//! The training engine every model runs on: one loop ([`fit`]) over a model that
//! implements [`Trainable`], one optimiser ([`optim::Adam`]), and checkpoints that cannot
//! tear ([`checkpoint`]).
//!
//! The loop owns what every model's training has in common: the epochs of a schedule
//! (continued runs keep counting), the minibatches of an epoch, the epoch's mean loss,
//! validation with early stopping and the best parameters, checkpoints every N epochs, a
//! stop "as if killed" after a given epoch (to test crash recovery), the progress bar and
//! the per-epoch line on stderr. The model owns the rest: its network and loss, its data
//! and its random streams, what its training log and checkpoint hold.
//!
//! A step is the model's own code. CLAIRE and LATE each have a hand-fused CPU step (raw
//! buffers, one pass per element-wise stage) and a candle-ops step (autograd or candle
//! tensors: any device, and the reference the fused step is tested against); both update
//! their parameters through the same [`optim::Adam`].
//!
//! Reproducibility: the loop draws no random numbers and sums the epoch's loss in step
//! order (`sum(loss * weight) / sum(weight)`), so a model that draws its randomness in a
//! fixed order gets the same bits for the same seed, whatever the thread count.
//!
//! # Adding a model
//! A model is a module with its network, its loss and a type implementing [`Trainable`]
//! (a `step` that draws its minibatch and updates the parameters, and optionally
//! `validate`/`keep_best` for early stopping and `checkpoint` for `--resume`); its training
//! function builds a [`Schedule`] and calls [`fit`]. Then add a variant to the model list of
//! the binary that trains it (`cellweave-train --model`, [`crate::ModelKind`]).
//! See `docs/models.md`.

/// The model card's file name in every model directory.
pub const CARD: &str = "card.yaml";

pub mod card;
pub mod checkpoint;
pub mod finish;
pub mod log;
pub mod optim;
pub mod state;

use crate::rng::Rng;
use cellweave::{info, Error, Result};
use std::time::Instant;

/// Seconds of CPU time (user + system) this process has used so far, all threads together:
/// for profiles and benches on a shared machine, where the wall clock also counts the time
/// other processes hold the cores (0 if the clock cannot be read).
pub fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write into.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// What one epoch gave.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// Global epoch number (1-based; continued runs keep counting).
    pub epoch: usize,
    /// Minibatches (optimiser steps) in the epoch.
    pub steps: usize,
    /// Mean training loss of the epoch (weighted by the minibatch weights).
    pub train_loss: f64,
    /// The monitored loss after the epoch (`None`: the model does not validate).
    pub val_loss: Option<f64>,
    /// Whether `val_loss` is the lowest so far.
    pub best: bool,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
}

/// A model the engine can train. It holds its parameters, optimiser, data and random
/// streams; the engine calls these in a fixed order every epoch:
/// `before_epoch`, `start_epoch`, `step` for each minibatch, `validate` (then `keep_best`
/// when the loss is the lowest so far), `end_epoch`, and `checkpoint` when one is due.
pub trait Trainable {
    /// Work between epochs before global epoch `epoch` (0-based), untimed (CLAIRE refines
    /// its seed pairs here).
    fn before_epoch(&mut self, _epoch: usize) -> Result<()> {
        Ok(())
    }
    /// Prepare global epoch `epoch` (0-based: shuffle, draw) and return its number of
    /// minibatches.
    fn start_epoch(&mut self, epoch: usize) -> Result<usize>;
    /// One optimiser step on minibatch `batch` of epoch `epoch`: the minibatch's loss and
    /// its weight in the epoch's mean (1 for a plain mean over steps; the number of
    /// cells for a mean over cells).
    fn step(&mut self, epoch: usize, batch: usize) -> Result<(f64, usize)>;
    /// The monitored loss after an epoch (and once before the first), for early stopping
    /// and the best parameters; `None` (the default): the model does not validate.
    fn validate(&mut self) -> Result<Option<f64>> {
        Ok(None)
    }
    /// Keep the current parameters as the best so far.
    fn keep_best(&mut self) -> Result<()> {
        Ok(())
    }
    /// Record a finished epoch (progress, training log); returns the line to print on
    /// stderr, if any.
    fn end_epoch(&mut self, record: &EpochRecord) -> Result<Option<String>>;
    /// Whether the model's own stopping rule ends the run after this epoch (deepMNN's
    /// plateau rule, whose counter lives in its checkpoint); `false` by default.
    fn finished(&self) -> bool {
        false
    }
    /// Write a checkpoint of the whole training state (from which the run resumes bit
    /// for bit).
    fn checkpoint(&mut self) -> Result<()> {
        Err(Error::new("this model does not write checkpoints").flag("--checkpoint-every"))
    }
}

/// The epochs to run and what to do between them.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Epochs already done (global; 0 for a new run).
    pub start: usize,
    /// Epoch at which the run ends (global).
    pub end: usize,
    /// Stop after this many epochs without a lower monitored loss (0: never stop early).
    pub patience: usize,
    /// Checkpoint after every N-th global epoch except the last (0: never).
    pub checkpoint_every: usize,
    /// Stop after this global epoch as if killed (tests crash recovery).
    pub stop_after: Option<usize>,
    /// Label of the progress bar.
    pub label: &'static str,
}

impl Schedule {
    /// The global epochs `start..end`, without early stopping by the engine.
    pub fn epochs(
        start: usize,
        end: usize,
        checkpoint_every: usize,
        stop_after: Option<usize>,
        label: &'static str,
    ) -> Self {
        Schedule {
            start,
            end,
            patience: 0,
            checkpoint_every,
            stop_after,
            label,
        }
    }
}

impl Schedule {
    /// The epochs left to a run that stands at `progress`, without early stopping by the
    /// engine.
    pub fn remaining(
        progress: &impl state::RunProgress,
        checkpoint_every: usize,
        stop_after: Option<usize>,
        label: &'static str,
    ) -> Self {
        Self::epochs(
            progress.epoch(),
            progress.end_epoch(),
            checkpoint_every,
            stop_after,
            label,
        )
    }
}

/// Automatic epochs: `epochs`, cut to the whole epochs that fit in `max_steps` (at least
/// one) when they would run more steps, then raised to enough epochs for `min_steps`
/// (`spe`: steps per epoch). The step bounds keep the length fixed in steps at both ends:
/// a small data set trains long enough, a large one no longer than a model
/// needs to converge, whatever the number of cells.
pub fn auto_epochs(epochs: usize, min_steps: usize, max_steps: usize, spe: usize) -> usize {
    let spe = spe.max(1);
    let capped = if epochs * spe > max_steps {
        (max_steps / spe).max(1)
    } else {
        epochs
    };
    capped.max(min_steps.div_ceil(spe))
}

/// The random stream of a model's initial weights (`Rng::derive(seed, [STREAM_INIT])`).
pub const STREAM_INIT: u64 = u64::MAX;
/// The random stream of an epoch's cell order (`Rng::derive(seed, [epoch, STREAM_SHUFFLE])`).
pub const STREAM_SHUFFLE: u64 = 1;

/// The generator of a model's initial weights for `seed`.
pub fn init_rng(seed: u64) -> Rng {
    Rng::derive(seed, &[STREAM_INIT])
}

/// The random stream `stream` of global epoch `epoch` (0-based) for `seed`.
pub fn epoch_rng(seed: u64, epoch: usize, stream: u64) -> Rng {
    Rng::derive(seed, &[epoch as u64, stream])
}

/// `0..n` shuffled for global epoch `epoch` (0-based) by the stream [`STREAM_SHUFFLE`].
pub fn shuffled(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    epoch_rng(seed, epoch, STREAM_SHUFFLE).shuffle(&mut order);
    order
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// False when the run stopped at `stop_after`.
    pub complete: bool,
    /// Whether early stopping (or the model's own rule) ended the run.
    pub stopped_early: bool,
    /// The epoch with the lowest monitored loss (0: the starting parameters).
    pub best_epoch: usize,
    /// The lowest monitored loss (infinite when the model does not validate).
    pub best_loss: f64,
    /// Every epoch of the run, in order.
    pub epochs: Vec<EpochRecord>,
}

/// Early-stopping bookkeeping.
#[derive(Debug, Clone)]
pub struct EarlyStop {
    /// The lowest monitored loss so far.
    pub best: f64,
    /// The epoch that gave it.
    pub best_epoch: usize,
    /// Epochs since it.
    pub since: usize,
    /// Epochs without a lower loss that end the run (0: never).
    pub patience: usize,
}

impl EarlyStop {
    /// Nothing observed yet; stop after `patience` epochs without a lower loss (0: never).
    pub fn new(patience: usize) -> Self {
        EarlyStop {
            best: f64::INFINITY,
            best_epoch: 0,
            since: 0,
            patience,
        }
    }
    /// Record an epoch's monitored loss; true when it is the best so far.
    pub fn observe(&mut self, epoch: usize, loss: f64) -> bool {
        if loss < self.best {
            self.best = loss;
            self.best_epoch = epoch;
            self.since = 0;
            true
        } else {
            self.since += 1;
            false
        }
    }
    /// Whether `patience` epochs have passed without a lower loss.
    pub fn should_stop(&self) -> bool {
        self.patience > 0 && self.since >= self.patience
    }
}

/// Write a training log table (built by the model: its columns are the model's) to
/// `path`: tab-separated text for a `.tsv` (`.txt`, `.tab`) path, else Arrow or Parquet by
/// the extension.
pub fn write_log(path: &std::path::Path, log: &cellweave::contract::Frame) -> Result<()> {
    cellweave::io::table::write_side(path, log)
}

/// Refuse a minibatch of fewer than 2 cells (field `batch-size`) and a learning rate that
/// is not a positive number (field `lr`).
pub fn check_batch_and_lr(batch_size: usize, lr: f64) -> Result<()> {
    if batch_size < 2 {
        return Err(Error::new("must be at least 2").field("batch-size"));
    }
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(Error::new("must be a positive number").field("lr"));
    }
    Ok(())
}

/// The error of a run that stopped after global epoch `epoch` as `--stop-after-epoch`
/// asked (only its checkpoints are on disk).
pub fn stopped_as_asked(epoch: usize) -> Error {
    Error::new(format!(
        "stopped after epoch {epoch} as asked (--stop-after-epoch); continue from the last checkpoint with --resume"
    ))
}

/// Train `model` through `schedule` (see the module documentation).
pub fn fit(model: &mut dyn Trainable, schedule: &Schedule) -> Result<Outcome> {
    let pb = cellweave::cli::progress(
        schedule.end.saturating_sub(schedule.start) as u64,
        schedule.label,
    );
    let result = run_epochs(model, schedule, &mut |line| {
        pb.inc(1);
        if let Some(line) = line {
            pb.suspend(|| info!("{line}"));
        }
    });
    pb.finish_and_clear();
    result
}

/// The loop; `report` is called after every epoch with its line (progress bar, stderr).
fn run_epochs(
    model: &mut dyn Trainable,
    s: &Schedule,
    report: &mut dyn FnMut(Option<String>),
) -> Result<Outcome> {
    let mut stop = EarlyStop::new(s.patience);
    if let Some(v) = model.validate()? {
        stop.observe(s.start, v);
    }
    let mut out = Outcome {
        complete: true,
        stopped_early: false,
        best_epoch: s.start,
        best_loss: f64::NAN,
        epochs: Vec::new(),
    };
    for e in s.start..s.end {
        model.before_epoch(e)?;
        let t0 = Instant::now();
        let steps = model.start_epoch(e)?;
        let (mut total, mut weight) = (0.0, 0usize);
        for b in 0..steps {
            let (loss, w) = model.step(e, b)?;
            total += loss * w as f64;
            weight += w;
        }
        let train_loss = total / weight.max(1) as f64;
        let val_loss = model.validate()?;
        let mut best = false;
        if let Some(v) = val_loss {
            if !v.is_finite() {
                return Err(Error::new(format!(
                    "training diverged at epoch {} (loss {v}); try a lower --lr",
                    e + 1
                )));
            }
            best = stop.observe(e + 1, v);
            if best {
                model.keep_best()?;
            }
        }
        let record = EpochRecord {
            epoch: e + 1,
            steps,
            train_loss,
            val_loss,
            best,
            seconds: t0.elapsed().as_secs_f64(),
        };
        let line = model.end_epoch(&record)?;
        out.epochs.push(record);
        report(line);
        let done = e + 1 == s.end;
        if s.checkpoint_every > 0 && (e + 1).is_multiple_of(s.checkpoint_every) && !done {
            model.checkpoint()?;
        }
        if s.stop_after == Some(e + 1) && !done {
            out.complete = false;
            break;
        }
        if stop.should_stop() || model.finished() {
            out.stopped_early = true;
            break;
        }
    }
    out.best_epoch = stop.best_epoch;
    out.best_loss = stop.best;
    Ok(out)
}
