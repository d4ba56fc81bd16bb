//! LATE on the training engine: the minibatches (a seeded shuffle of the training cells
//! every epoch, dropout masks drawn per minibatch from the same stream), validation on the
//! held-out cells, and the best parameters. What differs between the hand-written CPU path
//! and the autograd path is one [`LateStep`].

use super::batch::{Batch, Masks};
use super::{split_cells, EpochLog, Late, LateConfig, TrainOptions, TrainReport};
use crate::engine::{self, EpochRecord, Schedule, Trainable};
use cellweave::contract::Csr;
use cellweave::Result;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// One implementation of LATE's training step.
pub(crate) trait LateStep {
    /// One optimiser step on `batch` with dropout `masks`; returns the batch's mean loss.
    fn step(&mut self, batch: &Batch, masks: &Masks) -> Result<f64>;
    /// The batch's mean loss without dropout.
    fn loss(&self, batch: &Batch) -> Result<f64>;
    /// Keep the current parameters as the best.
    fn keep_best(&mut self) -> Result<()>;
    /// Write the best parameters into `model`.
    fn into_best(self: Box<Self>, model: &mut Late) -> Result<()>;
}

struct LateTrainer<'a> {
    imp: Box<dyn LateStep + 'a>,
    cfg: LateConfig,
    x: &'a Csr,
    codes: Option<&'a [u32]>,
    monitor: Vec<usize>,
    order: Vec<usize>,
    batch_size: usize,
    rng: SmallRng,
    log: Vec<EpochLog>,
    on_epoch: &'a mut dyn FnMut(&EpochLog),
    monitored: &'static str,
}

impl Trainable for LateTrainer<'_> {
    fn start_epoch(&mut self, _epoch: usize) -> Result<usize> {
        for i in (1..self.order.len()).rev() {
            let j = self.rng.random_range(0..=i);
            self.order.swap(i, j);
        }
        Ok(self.order.len().div_ceil(self.batch_size))
    }

    fn step(&mut self, _epoch: usize, b: usize) -> Result<(f64, usize)> {
        let start = b * self.batch_size;
        let chunk = &self.order[start..(start + self.batch_size).min(self.order.len())];
        let batch = Batch::gather(self.x, chunk, self.codes);
        let masks = Masks::sample(&mut self.rng, &self.cfg, &batch);
        Ok((self.imp.step(&batch, &masks)?, chunk.len()))
    }

    /// Mean loss without dropout over the monitored cells, 1024 at a time.
    fn validate(&mut self) -> Result<Option<f64>> {
        let rows = &self.monitor;
        let mut total = 0.0;
        for chunk in rows.chunks(1024) {
            let b = Batch::gather(self.x, chunk, self.codes);
            total += self.imp.loss(&b)? * chunk.len() as f64;
        }
        Ok(Some(if rows.is_empty() {
            f64::NAN
        } else {
            total / rows.len() as f64
        }))
    }

    fn keep_best(&mut self) -> Result<()> {
        self.imp.keep_best()
    }

    fn end_epoch(&mut self, r: &EpochRecord) -> Result<Option<String>> {
        let entry = EpochLog {
            epoch: r.epoch,
            train_loss: r.train_loss,
            val_loss: r.val_loss.unwrap_or(f64::NAN),
            seconds: r.seconds,
            best: r.best,
        };
        (self.on_epoch)(&entry);
        self.log.push(entry);
        Ok((r.epoch.is_multiple_of(10) || r.epoch == 1).then(|| {
            format!(
                "epoch {:>4}: train loss {:.6}, {} loss {:.6}{} ({:.2} s)",
                r.epoch,
                r.train_loss,
                self.monitored,
                r.val_loss.unwrap_or(f64::NAN),
                if r.best { " *" } else { "" },
                r.seconds
            )
        }))
    }
}

/// Train `model` with the step `make_step` builds from it (see [`super::train`]).
pub(crate) fn run<'a>(
    model: &mut Late,
    x: &'a Csr,
    codes: Option<&'a [u32]>,
    opts: &TrainOptions,
    make_step: impl FnOnce(&Late) -> Result<Box<dyn LateStep + 'a>>,
    on_epoch: &'a mut dyn FnMut(&EpochLog),
) -> Result<TrainReport> {
    let cfg = model.config.clone();
    let codes = if cfg.n_batches > 0 { codes } else { None };
    let (train_rows, val_rows) = split_cells(x.n_rows(), opts.val_fraction, opts.seed);
    // Without validation cells, early stopping watches the training cells' loss (no dropout).
    let monitor = if val_rows.is_empty() {
        train_rows.clone()
    } else {
        val_rows.clone()
    };
    let monitored = opts.monitored();
    let mut t = LateTrainer {
        imp: make_step(model)?,
        cfg,
        x,
        codes,
        monitor,
        order: train_rows.clone(),
        batch_size: opts.batch_size,
        rng: SmallRng::seed_from_u64(opts.seed),
        log: Vec::new(),
        on_epoch,
        monitored,
    };
    let out = engine::fit(
        &mut t,
        &Schedule {
            start: 0,
            end: opts.epochs,
            patience: opts.patience,
            checkpoint_every: 0,
            stop_after: None,
            label: "epochs",
        },
    )?;
    t.imp.into_best(model)?;
    Ok(TrainReport {
        log: t.log,
        best_epoch: out.best_epoch,
        best_val_loss: out.best_loss,
        n_train: train_rows.len(),
        n_val: val_rows.len(),
        stopped_early: out.stopped_early,
    })
}
