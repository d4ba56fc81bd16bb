//! scETM's training on the engine: minibatches of library-normalized counts, the KL
//! warm-up, scETM's per-step learning-rate decay and gradient clipping, Adam,
//! checkpoints that resume bit for bit.
//!
//! Minibatches: every epoch shuffles the cells and cuts them into `s = max(1, round(n / b))`
//! parts of (nearly) equal size, so no part is a handful of cells (BatchNorm needs
//! several). The KL weight at global step `t` is `w_max x min(1, (t / s) / (epochs / 3))`:
//! scETM's linear warm-up over the first third of the epochs, counting epochs
//! fractionally as scETM does. (scETM draws a running stream of minibatches of exactly
//! `b` cells, `max(1, n / b)` to an epoch; for `n <= b` both are one step of every
//! cell per epoch.) The learning rate is `lr x exp(-decay x t)` (scETM's
//! `lr_decay` = 6e-5 per step).
//!
//! Randomness: the initial weights come from `Rng::derive(seed, [INIT])`; epoch `e` draws
//! its cell order, dropout masks and reparameterisation noise from
//! `Rng::derive(seed, [e, SHUFFLE | DROPOUT | NOISE])`, so a checkpoint needs only the
//! epoch counter.

use crate::engine::log::{LogTable, Row};
use candle_core::{Device, Tensor};
use cellweave::contract::{Csr, Frame};
use cellweave::{bail, Error, Result};
use std::path::Path;

use super::network::{Minibatch, Network, Shape};
use crate::engine::state::{self, RunState};
use crate::engine::{self, EpochRecord, Schedule, Trainable};
use crate::optim::AdamConfig;
use crate::rng::Rng;
use crate::CandleExt;

const STREAM_DROPOUT: u64 = 2;
const STREAM_NOISE: u64 = 3;

/// Everything that decides the result of a run (recorded in the model card, checked on
/// `--resume`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScetmParams {
    /// Epochs of the run.
    pub epochs: usize,
    /// Cells per minibatch (about).
    pub batch_size: usize,
    /// Adam's initial learning rate.
    pub lr: f64,
    /// Per-step learning-rate decay: `lr_t = lr x exp(-lr_decay x t)`.
    pub lr_decay: f64,
    /// Topics K.
    pub topics: usize,
    /// Dimensions L of the gene and topic embeddings.
    pub emb_dim: usize,
    /// Width of the encoder's hidden layer.
    pub hidden: usize,
    /// Dropout probability of the hidden layer.
    pub dropout: f32,
    /// Largest KL weight, reached after `kl_warmup` of the epochs.
    pub max_kl_weight: f64,
    /// Fraction of the epochs over which the KL weight rises.
    pub kl_warmup: f64,
    /// Whether the decoder has a per-batch bias.
    pub batch_bias: bool,
    /// Seed of the initial weights, the shuffles, the dropout masks and the noise.
    pub seed: u64,
    /// How a corrected cells table is read (the batch-corrected scETM's stage 2); absent
    /// for raw counts. A model of corrected values whose card lacks it predates the choice
    /// and read [`CorrectedAs::Expm1`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected_as: Option<CorrectedAs>,
}

/// How scETM reads a corrected cells table (deepMNN's `--corrected` output, log1p scale)
/// as the non-negative weights it models ([`crate::scetm::command::corrected_weights`]).
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
pub enum CorrectedAs {
    /// the corrected log1p values themselves, negatives as 0 (as the batch-corrected scETM
    /// report's scETM reads deepMNN's output)
    #[default]
    Log1p,
    /// pseudo-counts expm1(max(v, 0)) (cellweave 0.x before this choice; a corrected value
    /// far above the data's range then outweighs every other gene of its cell)
    Expm1,
}

/// Epochs when `--epochs` is not given: scETM's 800, bounded in steps to [`MIN_STEPS`] ..
/// [`MAX_STEPS`] ([`default_epochs`]).
pub const DEFAULT_EPOCHS: usize = 800;
/// The fewest steps a run with automatic epochs takes. scETM's 800 epochs are 800 steps on a
/// data set of up to 3,000 cells (one minibatch per epoch), where the embedding is far from
/// converged: on the three dev sets (seed 0, classic scIB total) 800 / 3,000 / 6,000 steps
/// gave 0.485 / 0.641 / 0.699 (kang_ifnb), 0.610 / 0.779 / - (cellbench_3tech) and
/// 0.553 / 0.831 / 0.824 (cellbench_2tech_fullgenes); docs/models.md has the curves.
pub const MIN_STEPS: usize = 6000;
/// The most steps a run with automatic epochs takes (whole epochs, at least one), as for
/// every model of the engine: the length stops growing with the number of cells (800
/// epochs would be 40,000 steps at 100,000 cells).
pub const MAX_STEPS: usize = 6000;

/// The epochs of a run on `n` cells in minibatches of about `batch_size` when `--epochs`
/// is not given: [`DEFAULT_EPOCHS`] cut to [`MAX_STEPS`] and raised to [`MIN_STEPS`]
/// (whole epochs of [`parts`]`(n, batch_size)` steps).
pub fn default_epochs(n: usize, batch_size: usize) -> usize {
    let spe = parts(n, batch_size).len() - 1;
    crate::engine::auto_epochs(DEFAULT_EPOCHS, MIN_STEPS, MAX_STEPS, spe)
}

impl Default for ScetmParams {
    fn default() -> Self {
        ScetmParams {
            epochs: DEFAULT_EPOCHS,
            batch_size: 2000,
            lr: 5e-3,
            lr_decay: 6e-5,
            topics: 50,
            emb_dim: 400,
            hidden: 128,
            dropout: 0.1,
            max_kl_weight: 1e-7,
            kl_warmup: 1.0 / 3.0,
            batch_bias: true,
            seed: 0,
            corrected_as: None,
        }
    }
}

impl ScetmParams {
    /// Refuse parameters scETM cannot train with (naming the field).
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: &str| Err(Error::new(m.to_string()).field(f.to_string()));
        crate::engine::check_batch_and_lr(self.batch_size, self.lr)?;
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", "must be in [0, 1)");
        }
        if self.topics == 0 || self.emb_dim == 0 || self.hidden == 0 || self.epochs == 0 {
            return bad(
                "topics",
                "topics, embedding and hidden sizes and epochs must be at least 1",
            );
        }
        Ok(())
    }
    /// Adam's settings (no weight decay).
    pub fn adam(&self) -> AdamConfig {
        AdamConfig::l2(self.lr, 0.0)
    }
}

/// The training data: raw counts of the model's genes, library sizes, batch codes.
pub struct Data {
    /// Raw counts of the model's genes.
    pub counts: Csr,
    /// Total counts of each cell over the genes (1 for a cell without counts: its input
    /// and its likelihood term are then zero).
    pub library: Vec<f32>,
    /// Batch code of each cell.
    pub batch: Vec<u32>,
    /// Number of batches.
    pub n_batches: usize,
}

impl Data {
    /// The data of `counts` with each cell's batch code.
    pub fn new(counts: Csr, batch: Vec<u32>, n_batches: usize) -> Self {
        let library = (0..counts.n_rows())
            .map(|r| {
                let s: f64 = counts.row(r).1.iter().map(|&v| v as f64).sum();
                if s > 0.0 {
                    s as f32
                } else {
                    1.0
                }
            })
            .collect();
        Data {
            counts,
            library,
            batch,
            n_batches,
        }
    }
    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.counts.n_rows()
    }
    /// Dense library-normalized rows.
    pub fn normalized_rows(&self, rows: &[usize]) -> Vec<f32> {
        let g = self.counts.n_cols;
        let mut out = self.counts.to_dense_rows(rows);
        for (k, &r) in rows.iter().enumerate() {
            let inv = 1.0 / self.library[r];
            out[k * g..(k + 1) * g].iter_mut().for_each(|v| *v *= inv);
        }
        out
    }
}

/// scETM's columns of the training log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Terms {
    /// Mean negative log-likelihood per cell.
    pub nll: f64,
    /// Mean KL per cell.
    pub kl: f64,
    /// Mean KL weight of the epoch's steps.
    pub kl_weight: f64,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
}

/// One row of the training log.
pub type LogRow = Row<Terms>;

/// Where a run stands (saved in `state.json`).
pub type Progress = state::Progress<LogRow>;

/// Minibatch boundaries of an epoch over `n` cells: `max(1, round(n / b))` nearly equal
/// parts.
pub fn parts(n: usize, b: usize) -> Vec<usize> {
    let k = ((n as f64 / b as f64).round() as usize).max(1);
    (0..=k).map(|i| i * n / k).collect()
}

/// A training run: the network, Adam and progress ([`RunState`]) and the data.
pub struct Trainer<'a> {
    s: RunState<Network, ScetmParams, Progress>,
    data: &'a Data,
    device: Device,
}

crate::engine::state::deref_run_state!(Trainer, RunState<Network, ScetmParams, Progress>);

impl<'a> Trainer<'a> {
    /// A new run (`resume`: continue the newest checkpoint of `dir` when there is one).
    pub fn new(
        data: &'a Data,
        params: ScetmParams,
        fingerprint: String,
        dir: &Path,
        resume: bool,
        device: Device,
    ) -> Result<Self> {
        params.validate()?;
        if data.n_cells() < 2 {
            bail!("scetm needs at least 2 cells");
        }
        let shape = Shape {
            n_genes: data.counts.n_cols,
            hidden: params.hidden,
            topics: params.topics,
            emb_dim: params.emb_dim,
            bias_batches: if params.batch_bias && data.n_batches > 1 {
                data.n_batches
            } else {
                0
            },
        };
        let (seed, adam, fresh) = (params.seed, params.adam(), Progress::new(params.epochs));
        let s = RunState::start(
            "scetm",
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
        Ok(Trainer { s, data, device })
    }

    /// Run the remaining epochs (stop after global epoch `stop_after` as if killed);
    /// returns whether the schedule is complete.
    pub fn run(&mut self, checkpoint_every: usize, stop_after: Option<usize>) -> Result<bool> {
        let schedule = Schedule::remaining(&self.s.progress, checkpoint_every, stop_after, "scetm");
        let mut run = Epochs {
            t: self,
            order: Vec::new(),
            bounds: Vec::new(),
            rng_drop: Rng::derive(0, &[]),
            rng_noise: Rng::derive(0, &[]),
            sums: [0.0; 3],
        };
        Ok(engine::fit(&mut run, &schedule)?.complete)
    }

    /// scETM's KL weight at global step `t` (epochs counted fractionally, as scETM).
    pub fn kl_weight(&self, t: u64) -> f64 {
        let p = &self.s.params;
        let steps_per_epoch = (parts(self.data.n_cells(), p.batch_size).len() - 1) as f64;
        let epoch = t as f64 / steps_per_epoch;
        let full = self.s.progress.end_epoch as f64 * p.kl_warmup;
        if full <= 0.0 {
            return p.max_kl_weight;
        }
        (epoch / full).min(1.0) * p.max_kl_weight
    }

    /// The learning rate of global step `t`.
    pub fn lr(&self, t: u64) -> f64 {
        self.s.params.lr * (-self.s.params.lr_decay * t as f64).exp()
    }

    /// One optimiser step on the cells `rows`: (loss, nll, kl).
    pub fn step_rows(
        &mut self,
        rows: &[usize],
        rng_drop: &mut Rng,
        rng_noise: &mut Rng,
    ) -> Result<(f64, f64, f64)> {
        let (n, g) = (rows.len(), self.data.counts.n_cols);
        let (h, k) = (self.s.params.hidden, self.s.params.topics);
        let dev = &self.device;
        let x = Tensor::from_vec(self.data.normalized_rows(rows), (n, g), dev).ce()?;
        let mut mask = vec![0f32; n * h];
        rng_drop.dropout_mask(&mut mask, self.s.params.dropout);
        let mut eps = vec![0f32; n * k];
        rng_noise.fill_normal(&mut eps);
        let batch = (self.s.net.shape.bias_batches > 0)
            .then(|| {
                let b: Vec<u32> = rows.iter().map(|&r| self.data.batch[r]).collect();
                Tensor::from_vec(b, n, dev)
            })
            .transpose()
            .ce()?;
        let mb = Minibatch {
            x,
            batch,
            mask: Tensor::from_vec(mask, (n, h), dev).ce()?,
            eps: Tensor::from_vec(eps, (n, k), dev).ce()?,
        };
        let t = self.s.progress.steps;
        let f = self.s.net.forward_train(&mb, self.kl_weight(t)).ce()?;
        let scalar = |x: &Tensor| x.to_scalar::<f32>().map(|v| v as f64).ce();
        let (loss, nll, kl) = (scalar(&f.loss)?, scalar(&f.nll)?, scalar(&f.kl)?);
        if !loss.is_finite() {
            bail!(
                "the loss became {loss} at step {}: lower --lr",
                self.s.progress.steps + 1
            );
        }
        let (grads, _) = self.s.net.clipped_grads(&f.loss).ce()?;
        self.s.adam.set_lr(self.lr(t));
        self.s.adam.step_tensors(&grads).ce()?;
        self.s.net.update_running(&f, n).ce()?;
        self.s.progress.steps += 1;
        Ok((loss, nll, kl))
    }

    /// Evaluation-mode mu of every cell (K columns), in chunks.
    pub fn embed_mu(&self) -> Result<Vec<f32>> {
        embed_rows(&self.s.net, self.data, &self.device)
    }

    /// The training log as a table.
    pub fn log_frame(&self, step: &cellweave::contract::Step) -> Frame {
        LogTable::epochs("scetm", &self.s.progress.log)
            .value("nll", |r| r.nll)
            .value("kl", |r| r.kl)
            .value("kl_weight", |r| r.kl_weight)
            .value("lr", |r| r.lr)
            .end(self.fingerprint.clone(), step)
    }
}

/// Evaluation-mode mu of every cell of `data` (K columns), in chunks.
pub fn embed_rows(net: &Network, data: &Data, device: &Device) -> Result<Vec<f32>> {
    const CHUNK: usize = 2000;
    let (n, g) = (data.n_cells(), data.counts.n_cols);
    let mut out = Vec::with_capacity(n * net.shape.topics);
    let mut start = 0;
    while start < n {
        let end = (start + CHUNK).min(n);
        let rows: Vec<usize> = (start..end).collect();
        let x = Tensor::from_vec(data.normalized_rows(&rows), (end - start, g), device).ce()?;
        let mu = net.encode_mu(&x).ce()?.to_device(&Device::Cpu).ce()?;
        out.extend(mu.flatten_all().ce()?.to_vec1::<f32>().ce()?);
        start = end;
    }
    Ok(out)
}

/// Row-wise softmax of an `n x k` matrix (theta from mu).
pub fn softmax_rows(mu: &[f32], k: usize) -> Vec<f32> {
    let mut out = mu.to_vec();
    for row in out.chunks_mut(k) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0f64;
        for v in row.iter_mut() {
            *v = (*v - m).exp();
            s += *v as f64;
        }
        row.iter_mut().for_each(|v| *v = (*v as f64 / s) as f32);
    }
    out
}

/// One call's epochs on the engine.
struct Epochs<'t, 'a> {
    t: &'t mut Trainer<'a>,
    order: Vec<usize>,
    bounds: Vec<usize>,
    rng_drop: Rng,
    rng_noise: Rng,
    /// Sums over the epoch's steps of (nll x cells, kl x cells, kl weight).
    sums: [f64; 3],
}

impl Trainable for Epochs<'_, '_> {
    fn start_epoch(&mut self, e: usize) -> Result<usize> {
        let seed = self.t.s.params.seed;
        self.order = engine::shuffled(seed, e, self.t.data.n_cells());
        self.rng_drop = engine::epoch_rng(seed, e, STREAM_DROPOUT);
        self.rng_noise = engine::epoch_rng(seed, e, STREAM_NOISE);
        self.bounds = parts(self.order.len(), self.t.s.params.batch_size);
        self.sums = [0.0; 3];
        Ok(self.bounds.len() - 1)
    }

    fn step(&mut self, _e: usize, b: usize) -> Result<(f64, usize)> {
        let rows = &self.order[self.bounds[b]..self.bounds[b + 1]];
        let w = self.t.kl_weight(self.t.s.progress.steps);
        let (loss, nll, kl) = self
            .t
            .step_rows(rows, &mut self.rng_drop, &mut self.rng_noise)?;
        let n = rows.len() as f64;
        self.sums[0] += nll * n;
        self.sums[1] += kl * n;
        self.sums[2] += w;
        Ok((loss, rows.len()))
    }

    fn end_epoch(&mut self, r: &EpochRecord) -> Result<Option<String>> {
        let cells = self.t.data.n_cells() as f64;
        let lr = self.t.lr(self.t.s.progress.steps.saturating_sub(1));
        let row = Row::new(
            r,
            Terms {
                nll: self.sums[0] / cells,
                kl: self.sums[1] / cells,
                kl_weight: self.sums[2] / r.steps.max(1) as f64,
                lr,
            },
        );
        let line = format!(
            "scetm epoch {}/{}: loss {:.4} (nll {:.4}, kl {:.2}, kl weight {:.2e}; {} steps, {:.2} s)",
            r.epoch, self.t.s.progress.end_epoch, row.loss, row.nll, row.kl, row.kl_weight, r.steps, r.seconds
        );
        self.t.s.progress.record(r, row);
        Ok(Some(line))
    }

    fn checkpoint(&mut self) -> Result<()> {
        self.t.s.checkpoint()
    }
}
