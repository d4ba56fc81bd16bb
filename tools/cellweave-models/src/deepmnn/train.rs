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
//!
//! With the autoencoder pair space (the batch-corrected scETM's stage 1), a new run first
//! pre-trains the autoencoder ([`super::autoencoder::pretrain`]) on the log1p values and
//! freezes it; it is saved with the network, so a resumed run reads it back from the
//! checkpoint instead of training it again.

use candle_core::{Device, Tensor};
use cellweave::contract::Frame;
use cellweave::integrate::deepmnn::Scaling;
use cellweave::io::rows::Rows;
use cellweave::{bail, Error, Result};
use std::path::Path;

use super::autoencoder::{self, AeParams};
use super::network::{Network, PairSpace, Shape};
use crate::engine::checkpoint::Checkpoints;
use crate::engine::log::{LogTable, Row};
use crate::engine::state::RunState;
use crate::engine::{self, EpochRecord, Schedule, Trainable};
use crate::optim::AdamConfig;
use crate::CandleExt;

/// Where the pair term compares the corrected cells of a pair.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum PairSpaceKind {
    /// deepMNN: their projections on the principal axes of the scaled values
    #[default]
    Pcs,
    /// the batch-corrected scETM: the codes of an autoencoder pre-trained on the log1p
    /// values, then frozen
    Autoencoder,
}

impl PairSpaceKind {
    /// The default weights of the pair and identity terms: deepMNN's 1 and 0.001, the
    /// batch-corrected scETM's 0.1 and 0.99.
    pub fn weights(self) -> (f64, f64) {
        match self {
            PairSpaceKind::Pcs => (1.0, 1e-3),
            PairSpaceKind::Autoencoder => (0.1, 0.99),
        }
    }
}

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
    /// Where the pair term compares the corrected cells.
    #[serde(default)]
    pub pair_space: PairSpaceKind,
    /// Weight of the pair term.
    #[serde(default = "one")]
    pub pair_weight: f64,
    /// Weight of the identity term.
    pub identity_weight: f64,
    /// Principal components of the pair term's projection (and of the pair search).
    pub projection_pcs: usize,
    /// How the frozen autoencoder of the autoencoder pair space is pre-trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoencoder: Option<AeParams>,
    /// Seed of the initial weights and the shuffles.
    pub seed: u64,
}

/// The most steps a run with automatic epochs takes (whole epochs, at least one), as for
/// CLAIRE, MEDL, inVAE and scETM ([`default_epochs`]).
pub const MAX_STEPS: usize = 6000;

/// Epochs when `--epochs` is not given: deepMNN's 200 (the default `epochs`), cut to the
/// whole epochs of `n_pairs` pairs in minibatches of `batch_size` that fit in [`MAX_STEPS`]
/// (at least one; `engine::auto_epochs`), so that the length stops growing with the number
/// of pairs. Up to 30,720 pairs (30 minibatches of 1,024) nothing changes; the plateau rule
/// (`patience`) may stop a run earlier either way.
pub fn default_epochs(n_pairs: usize, batch_size: usize) -> usize {
    let steps = n_pairs.div_ceil(batch_size.max(1));
    engine::auto_epochs(DeepmnnParams::default().epochs, 0, MAX_STEPS, steps)
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
            pair_space: PairSpaceKind::Pcs,
            pair_weight: 1.0,
            identity_weight: 1e-3,
            projection_pcs: 50,
            autoencoder: None,
            seed: 0,
        }
    }
}

fn one() -> f64 {
    1.0
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
        match (self.pair_space, &self.autoencoder) {
            (PairSpaceKind::Autoencoder, Some(ae)) => ae.validate()?,
            (PairSpaceKind::Autoencoder, None) => {
                return bad(
                    "--pair-space",
                    "the autoencoder pair space needs its parameters",
                )
            }
            (PairSpaceKind::Pcs, Some(_)) => {
                return bad(
                    "--pair-space",
                    "autoencoder parameters without --pair-space autoencoder",
                )
            }
            (PairSpaceKind::Pcs, None) => {}
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

/// The training data: the cells (read, and z-scored, when a minibatch needs them), the
/// pairs, what the pair term needs.
pub struct Data<'r> {
    /// The cells, on the scaled scale when read through [`Cells::scaled_rows`].
    pub x: Cells<'r>,
    /// Genes (columns of `x`).
    pub g: usize,
    /// Pairs of cell rows.
    pub pairs: Vec<(u32, u32)>,
    /// What the pair space is made of.
    pub pair_input: PairInput,
}

/// The cells of a run: scaled rows held in memory, or the input's sparse rows (a
/// memory-mapped table's, or a table's own matrix) z-scored only when gathered, so that no
/// dense copy of the whole data set is held.
pub enum Cells<'r> {
    /// `n x g`, row-major, already on the scaled scale.
    Dense(Vec<f32>),
    /// The input rows and the per-gene scaling (clip 10) that puts them on the scaled scale.
    Rows {
        /// The input rows (the model's genes, in its order).
        rows: &'r dyn Rows,
        /// The scaling applied to each gathered row.
        scaling: Scaling,
    },
}

impl Cells<'_> {
    /// Number of cells.
    pub fn n_rows(&self, g: usize) -> usize {
        match self {
            Cells::Dense(x) => x.len() / g.max(1),
            Cells::Rows { rows, .. } => rows.n_rows(),
        }
    }
    /// The scaled values of the given rows (`rows.len() x g`, row-major): a copy of the
    /// dense rows, or the sparse rows densified and z-scored (the same values as scaling
    /// the whole densified matrix: every entry goes through the same operations).
    pub fn scaled_rows(&self, g: usize, rows: impl IntoIterator<Item = usize>) -> Vec<f32> {
        let mut out = Vec::new();
        for r in rows {
            match self {
                Cells::Dense(x) => out.extend_from_slice(&x[r * g..(r + 1) * g]),
                Cells::Rows { rows, scaling } => {
                    let start = out.len();
                    out.resize(start + g, 0.0);
                    let dst = &mut out[start..];
                    let (idx, val) = rows.row(r);
                    for (&c, &v) in idx.iter().zip(val) {
                        dst[c as usize] = v;
                    }
                    scaling.apply(dst);
                }
            }
        }
        out
    }
}

/// What the pair space of a run is made of.
pub enum PairInput {
    /// deepMNN: the `g x k` principal axes of the scaled values.
    Axes {
        /// `g x k`, row-major.
        pcs: Vec<f32>,
        /// Principal components (columns of `pcs`).
        k: usize,
    },
    /// The batch-corrected scETM: the autoencoder's training values (the log1p values of
    /// every cell, `n x g`) and the scaling between them and `x`.
    Autoencoder {
        /// `n x g`, row-major, the log1p values.
        log1p: Vec<f32>,
        /// The per-gene scaling of `x`.
        scaling: Scaling,
    },
}

impl Data<'_> {
    /// Number of cells (rows of `x`).
    pub fn n_cells(&self) -> usize {
        self.x.n_rows(self.g)
    }
    /// The rows of a minibatch: first cells, then their partners.
    fn minibatch(&self, pairs: &[usize]) -> Vec<f32> {
        let firsts = pairs.iter().map(|&p| self.pairs[p].0 as usize);
        let partners = pairs.iter().map(|&p| self.pairs[p].1 as usize);
        self.x.scaled_rows(self.g, firsts.chain(partners))
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
    /// The autoencoder pair space: the mean squared error of each pre-training epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub autoencoder_mse: Vec<f64>,
}

crate::engine::state::run_progress!(Progress);

/// A training run: the network, Adam and progress ([`RunState`]), the data and the
/// pair space.
pub struct Trainer<'a> {
    s: RunState<Network, DeepmnnParams, Progress>,
    data: &'a Data<'a>,
    space: PairSpace,
    device: Device,
}

crate::engine::state::deref_run_state!(Trainer, RunState<Network, DeepmnnParams, Progress>);

impl<'a> Trainer<'a> {
    /// A new run (`resume`: continue the newest checkpoint of `dir` when there is one).
    pub fn new(
        data: &'a Data<'a>,
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
        let ae = match (&data.pair_input, &params.autoencoder) {
            (PairInput::Autoencoder { .. }, Some(ae)) => Some(ae),
            (PairInput::Axes { .. }, None) => None,
            _ => bail!("the data do not match --pair-space"),
        };
        let shape = Shape {
            n_genes: data.g,
            blocks: params.blocks,
            pair_code: ae.map_or(0, |a| a.latent),
        };
        // A new run pre-trains the autoencoder; a resumed one reads it from its checkpoint.
        let resuming = resume && Checkpoints::of(dir, "deepmnn").latest()?.is_some();
        let (pretrained, mse) = match (&data.pair_input, ae) {
            (PairInput::Autoencoder { log1p, .. }, Some(ae)) if !resuming => {
                let (a, mse) = autoencoder::pretrain(log1p, data.g, ae, params.seed, &device)?;
                (Some(a), mse)
            }
            _ => (None, Vec::new()),
        };
        let fresh = Progress {
            epoch: 0,
            end_epoch: params.epochs,
            steps: 0,
            seconds: 0.0,
            best: f64::INFINITY,
            since: 0,
            stopped: false,
            log: Vec::new(),
            autoencoder_mse: mse,
        };
        let (seed, adam, dev) = (params.seed, params.adam(), &device);
        let s = RunState::start(
            "deepmnn",
            dir,
            resume,
            fingerprint,
            params,
            true,
            adam,
            |t| Network::from_named(t, shape, &device),
            move || {
                let mut net = Network::init(shape, &mut engine::init_rng(seed), dev)?;
                net.autoencoder = pretrained;
                Ok(net)
            },
            fresh,
        )?;
        let space = match (&data.pair_input, &s.net.autoencoder) {
            (PairInput::Axes { pcs, k }, _) => {
                PairSpace::Axes(Tensor::from_vec(pcs.clone(), (data.g, *k), &device).ce()?)
            }
            (PairInput::Autoencoder { scaling, .. }, Some(ae)) => {
                let (w_t, b) = ae.folded(scaling, &device)?;
                PairSpace::Codes { w_t, b }
            }
            (PairInput::Autoencoder { .. }, None) => bail!("the run has no autoencoder"),
        };
        Ok(Trainer {
            s,
            data,
            space,
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
        let p = &self.s.params;
        let l = self
            .net
            .loss(&x, &self.space, p.pair_weight, p.identity_weight)
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

/// Rows per forward pass of the final correction.
pub const CORRECT_CHUNK: usize = 1024;

/// Evaluation-mode corrected values (scaled scale, `n x g`) of every cell of `x`, scaled
/// and corrected a chunk of 1,024 rows at a time.
pub fn correct_rows(net: &Network, x: &Cells, g: usize, device: &Device) -> Result<Vec<f32>> {
    let n = x.n_rows(g);
    let mut out = Vec::with_capacity(n * g);
    for start in (0..n).step_by(CORRECT_CHUNK) {
        let end = (start + CORRECT_CHUNK).min(n);
        let rows = x.scaled_rows(g, start..end);
        let t = Tensor::from_vec(rows, (end - start, g), device).ce()?;
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
