//! deepMNN's training on the engine: minibatches of pairs, Adam with an L2 weight decay,
//! deepMNN's step schedule and plateau stop, checkpoints that resume bit for bit.
//!
//! Every epoch shuffles the pairs (`Rng::derive(seed, [e, SHUFFLE])`) and cuts them into
//! minibatches of `batch_size` pairs, the last one shorter (torch's `DataLoader`). The
//! epoch's loss is the mean of its minibatch losses. Epoch `e` (0-based) runs at
//! `max(min_lr, lr x factor^floor(e / step))`. After each epoch, a loss below the best
//! by more than `min_improvement` becomes the best; `patience` epochs in a row without
//! one end the run (deepMNN: 0.01 and 10). The final weights are the last ones, as in
//! deepMNN. Initial weights come from `Rng::derive(seed, [INIT])`.

use candle_core::{Device, Tensor};
use cellweave::contract::Frame;
use cellweave::{bail, Error, Result};
use std::path::Path;

use super::network::{Network, Shape};
use crate::engine::log::{LogTable, Row};
use crate::engine::state::RunState;
use crate::engine::{self, EpochRecord, Schedule, Trainable};
use crate::optim::AdamConfig;
use crate::CandleExt;

/// Everything that decides the result of a run (recorded in the model card, checked on
/// `--resume`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeepmnnParams {
    /// Largest number of epochs.
    pub epochs: usize,
    /// Pairs per minibatch.
    pub batch_size: usize,
    /// Adam's learning rate (of the first epochs).
    pub lr: f64,
    /// Adam's L2 weight decay.
    pub weight_decay: f64,
    /// The learning rate is multiplied by `lr_factor` every `lr_step` epochs ...
    pub lr_step: usize,
    /// The factor of each learning-rate step.
    pub lr_factor: f64,
    /// ... down to `min_lr`.
    pub min_lr: f64,
    /// Stop after this many epochs without an improvement above `min_improvement`.
    pub patience: usize,
    /// Smallest decrease of the epoch loss that counts as an improvement.
    pub min_improvement: f64,
    /// Residual blocks of the network.
    pub blocks: usize,
    /// Weight of the identity term.
    pub identity_weight: f64,
    /// Principal components of the pair term's projection.
    pub projection_pcs: usize,
    /// Seed of the initial weights and the shuffles.
    pub seed: u64,
}

impl Default for DeepmnnParams {
    fn default() -> Self {
        DeepmnnParams {
            epochs: 200,
            batch_size: 1024,
            lr: 0.1,
            weight_decay: 1e-4,
            lr_step: 20,
            lr_factor: 0.8,
            min_lr: 1e-6,
            patience: 10,
            min_improvement: 0.01,
            blocks: 2,
            identity_weight: 1e-3,
            projection_pcs: 50,
            seed: 0,
        }
    }
}

impl DeepmnnParams {
    /// Refuse parameters deepMNN cannot train with (naming the flag).
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: &str| Err(Error::new(m.to_string()).flag(f));
        if self.batch_size < 1 {
            return bad("--batch-size", "must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("--lr", "must be a positive number");
        }
        if self.blocks == 0 {
            return bad("--blocks", "must be at least 1");
        }
        if self.epochs == 0 {
            return bad("--epochs", "must be at least 1");
        }
        Ok(())
    }
    fn adam(&self) -> AdamConfig {
        AdamConfig::l2(self.lr, self.weight_decay)
    }
    /// The learning rate of epoch `e` (0-based).
    pub fn lr_at(&self, e: usize) -> f64 {
        let k = e.checked_div(self.lr_step).unwrap_or(0);
        (self.lr * self.lr_factor.powi(k as i32)).max(self.min_lr)
    }
}

/// The training data: scaled values of every cell, the pairs, the projection axes.
pub struct Data {
    /// `n x g`, row-major, on the scaled scale.
    pub x: Vec<f32>,
    /// Genes (columns of `x`).
    pub g: usize,
    /// Pairs of cell rows.
    pub pairs: Vec<(u32, u32)>,
    /// `g x k` principal axes of the pair term.
    pub pcs: Vec<f32>,
    /// Principal components (columns of `pcs`).
    pub k: usize,
}

impl Data {
    /// Number of cells (rows of `x`).
    pub fn n_cells(&self) -> usize {
        self.x.len() / self.g.max(1)
    }
    /// The rows of a minibatch: first cells, then their partners.
    fn minibatch(&self, pairs: &[usize]) -> Vec<f32> {
        let g = self.g;
        let mut out = Vec::with_capacity(2 * pairs.len() * g);
        for side in 0..2 {
            for &p in pairs {
                let (a, b) = self.pairs[p];
                let c = if side == 0 { a } else { b } as usize;
                out.extend_from_slice(&self.x[c * g..(c + 1) * g]);
            }
        }
        out
    }
}

/// deepMNN's columns of the training log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Terms {
    /// Mean pair term of the epoch's minibatches.
    pub pair: f64,
    /// Mean identity term of the epoch's minibatches.
    pub identity: f64,
    /// The epoch's learning rate.
    pub lr: f64,
}

/// One row of the training log.
pub type LogRow = Row<Terms>;

/// Where a run stands (saved in `state.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Global epochs done.
    pub epoch: usize,
    /// The global epoch at which the run ends.
    pub end_epoch: usize,
    /// Optimiser steps done.
    pub steps: u64,
    /// Seconds of training.
    pub seconds: f64,
    /// Best epoch loss so far and epochs since it.
    pub best: f64,
    /// Epochs since the best loss.
    pub since: usize,
    /// The plateau rule ended the run.
    pub stopped: bool,
    /// The training log rows, one per epoch.
    pub log: Vec<LogRow>,
}

crate::engine::state::run_progress!(Progress);

/// A training run: the network, Adam and progress ([`RunState`]), the data and the
/// projection axes.
pub struct Trainer<'a> {
    s: RunState<Network, DeepmnnParams, Progress>,
    data: &'a Data,
    pcs: Tensor,
    device: Device,
}

crate::engine::state::deref_run_state!(Trainer, RunState<Network, DeepmnnParams, Progress>);

impl<'a> Trainer<'a> {
    /// A new run (`resume`: continue the newest checkpoint of `dir` when there is one).
    pub fn new(
        data: &'a Data,
        params: DeepmnnParams,
        fingerprint: String,
        dir: &Path,
        resume: bool,
        device: Device,
    ) -> Result<Self> {
        params.validate()?;
        if data.pairs.is_empty() {
            bail!("deepmnn needs at least one pair");
        }
        let shape = Shape {
            n_genes: data.g,
            blocks: params.blocks,
        };
        let pcs = Tensor::from_vec(data.pcs.clone(), (data.g, data.k), &device).ce()?;
        let fresh = Progress {
            epoch: 0,
            end_epoch: params.epochs,
            steps: 0,
            seconds: 0.0,
            best: f64::INFINITY,
            since: 0,
            stopped: false,
            log: Vec::new(),
        };
        let (seed, adam) = (params.seed, params.adam());
        let s = RunState::start(
            "deepmnn",
            dir,
            resume,
            fingerprint,
            params,
            true,
            adam,
            |t| Network::from_named(t, shape, &device),
            || Network::init(shape, &mut engine::init_rng(seed), &device),
            fresh,
        )?;
        Ok(Trainer {
            s,
            data,
            pcs,
            device,
        })
    }

    /// Run the remaining epochs (stop after global epoch `stop_after` as if killed);
    /// returns whether the run is complete (all epochs, or the plateau rule).
    pub fn run(&mut self, checkpoint_every: usize, stop_after: Option<usize>) -> Result<bool> {
        if self.s.progress.stopped {
            return Ok(true);
        }
        let schedule =
            Schedule::remaining(&self.s.progress, checkpoint_every, stop_after, "deepmnn");
        let mut run = Epochs {
            t: self,
            order: Vec::new(),
            sums: [0.0; 2],
        };
        let out = engine::fit(&mut run, &schedule)?;
        Ok(out.complete || self.s.progress.stopped)
    }

    /// One optimiser step on the pairs `rows` (indices into the pairs): (loss, pair term,
    /// identity term).
    pub fn step_pairs(&mut self, rows: &[usize], lr: f64) -> Result<(f64, f64, f64)> {
        let x = Tensor::from_vec(
            self.data.minibatch(rows),
            (2 * rows.len(), self.data.g),
            &self.device,
        )
        .ce()?;
        let l = self
            .net
            .loss(&x, &self.pcs, self.s.params.identity_weight)
            .ce()?;
        let scalar = |x: &Tensor| x.to_scalar::<f32>().map(|v| v as f64).ce();
        let (loss, pair, identity) = (scalar(&l.loss)?, scalar(&l.pair)?, scalar(&l.identity)?);
        if !loss.is_finite() {
            bail!(
                "the loss became {loss} at step {}: lower --lr",
                self.s.progress.steps + 1
            );
        }
        let grads = l.loss.backward().ce()?;
        self.s.adam.set_lr(lr);
        self.s.adam.step(&grads).ce()?;
        self.s.net.update_running(&l.stats, 2 * rows.len()).ce()?;
        self.s.progress.steps += 1;
        Ok((loss, pair, identity))
    }

    /// The training log as a table.
    pub fn log_frame(&self, step: &cellweave::contract::Step) -> Frame {
        LogTable::epochs("deepmnn", &self.s.progress.log)
            .value("pair_loss", |r| r.pair)
            .value("identity_loss", |r| r.identity)
            .value("lr", |r| r.lr)
            .end(self.fingerprint.clone(), step)
    }
}

/// Evaluation-mode corrected values of dense scaled rows `x` (`n x g`), in chunks.
pub fn correct_rows(net: &Network, x: &[f32], g: usize, device: &Device) -> Result<Vec<f32>> {
    const CHUNK: usize = 1024;
    let mut out = Vec::with_capacity(x.len());
    for rows in x.chunks(CHUNK * g) {
        let t = Tensor::from_vec(rows.to_vec(), (rows.len() / g, g), device).ce()?;
        let y = net
            .forward(&t, false)
            .ce()?
            .out
            .to_device(&Device::Cpu)
            .ce()?;
        out.extend(y.flatten_all().ce()?.to_vec1::<f32>().ce()?);
    }
    Ok(out)
}

/// One call's epochs on the engine.
struct Epochs<'t, 'a> {
    t: &'t mut Trainer<'a>,
    order: Vec<usize>,
    /// Sums over the epoch's steps of the pair and identity terms.
    sums: [f64; 2],
}

impl Trainable for Epochs<'_, '_> {
    fn start_epoch(&mut self, e: usize) -> Result<usize> {
        self.order = engine::shuffled(self.t.s.params.seed, e, self.t.data.pairs.len());
        self.sums = [0.0; 2];
        Ok(self.order.len().div_ceil(self.t.s.params.batch_size))
    }

    fn step(&mut self, e: usize, b: usize) -> Result<(f64, usize)> {
        let bs = self.t.s.params.batch_size;
        let rows = &self.order[b * bs..((b + 1) * bs).min(self.order.len())];
        let lr = self.t.s.params.lr_at(e);
        let (loss, pair, identity) = self.t.step_pairs(rows, lr)?;
        self.sums[0] += pair;
        self.sums[1] += identity;
        Ok((loss, 1))
    }

    fn end_epoch(&mut self, r: &EpochRecord) -> Result<Option<String>> {
        let p = &mut self.t.s.progress;
        let params = &self.t.s.params;
        p.epoch = r.epoch;
        p.seconds += r.seconds;
        if r.train_loss < p.best - params.min_improvement {
            p.best = r.train_loss;
            p.since = 0;
        } else {
            p.since += 1;
        }
        p.stopped = params.patience > 0 && p.since >= params.patience;
        let steps = r.steps.max(1) as f64;
        let row = Row::new(
            r,
            Terms {
                pair: self.sums[0] / steps,
                identity: self.sums[1] / steps,
                lr: params.lr_at(r.epoch - 1),
            },
        );
        let line = format!(
            "deepmnn epoch {}/{}: loss {:.4} (pairs {:.4}, identity {:.4}; lr {:.2e}, {} steps, {:.2} s){}",
            r.epoch,
            p.end_epoch,
            row.loss,
            row.pair,
            row.identity,
            row.lr,
            r.steps,
            r.seconds,
            if p.stopped {
                format!("; no improvement above {} for {} epochs: stop", params.min_improvement, p.since)
            } else {
                String::new()
            }
        );
        p.log.push(row);
        Ok(Some(line))
    }

    fn finished(&self) -> bool {
        self.t.s.progress.stopped
    }

    fn checkpoint(&mut self) -> Result<()> {
        self.t.s.checkpoint()
    }
}
