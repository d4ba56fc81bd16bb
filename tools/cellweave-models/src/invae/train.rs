//! inVAE training on the engine: the data (counts and covariate codes), the epochs of
//! minibatch steps, checkpoints that resume bit for bit, and the embeddings.
//!
//! Randomness: the initial weights come from `Rng::derive(seed, [INIT])`; epoch `e` shuffles
//! the cells with `Rng::derive(seed, [e, SHUFFLE])` and draws its dropout masks and
//! reparameterisation noise from `Rng::derive(seed, [e, NOISE])`. Checkpoints are taken
//! between epochs, so the random state to restore is the epoch counter.

use candle_core::Device;
use cellweave::contract::{Categorical, Csr};
use cellweave::{bail, Result};
use std::collections::HashMap;
use std::path::Path;

use super::net::{Batch, Net, Noise, Shape};
use crate::engine::log::Row;
use crate::engine::state::{self, RunState};
use crate::engine::{self, EpochRecord, Schedule, Trainable};
use crate::optim::AdamConfig;
use crate::rng::Rng;
use crate::CandleExt;

const STREAM_NOISE: u64 = 2;

/// Everything that decides the result of a training run (recorded in the model card).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    /// Obs columns of the invariant prior's covariates.
    pub inv_covariates: Vec<String>,
    /// Obs columns of the spurious prior's (or the decoder's) covariates.
    pub spur_covariates: Vec<String>,
    /// Dimensions of z_inv.
    pub latent_inv: usize,
    /// Dimensions of z_spur (0 when the spurious covariates go to the decoder).
    pub latent_spur: usize,
    /// The spurious covariates go to the decoder instead of a z_spur prior (`latent_spur` 0).
    #[serde(default)]
    pub inject_spur: bool,
    /// The priors' means are learned from the covariates (`--prior-mean learned`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub learned_prior_mean: bool,
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Hidden layers of the encoder.
    pub encoder_layers: usize,
    /// Dropout probability of the hidden layers.
    pub dropout: f32,
    /// Weight of the prior and posterior terms.
    pub beta: f64,
    /// Epochs over which beta rises linearly from `beta / warmup` to `beta` (0: none).
    pub kl_warmup: usize,
    /// Epochs of the run.
    pub epochs: usize,
    /// Cells per minibatch.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Adam's L2 weight decay.
    pub weight_decay: f64,
    /// Seed of the initial weights, the shuffles, the dropout masks and the noise.
    pub seed: u64,
}

impl Params {
    /// Adam's settings (L2 weight decay).
    pub fn adam(&self) -> AdamConfig {
        AdamConfig::l2(self.lr, self.weight_decay)
    }
    /// beta for global epoch `e` (0-based).
    pub fn beta_at(&self, e: usize) -> f64 {
        if self.kl_warmup == 0 {
            self.beta
        } else {
            self.beta * ((e + 1) as f64 / self.kl_warmup as f64).min(1.0)
        }
    }
}

/// One covariate: its name and levels (the one-hot columns, in order).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Covariate {
    /// The obs column.
    pub name: String,
    /// Its levels, in one-hot column order.
    pub levels: Vec<String>,
}

/// The training data: counts of the model's genes and the covariates' codes per cell
/// (`u32::MAX`: a level the model does not know, all-zero one-hot).
pub struct Data {
    /// Raw counts of the model's genes.
    pub counts: Csr,
    /// The invariant covariates and each cell's code.
    pub inv: Vec<(Covariate, Vec<u32>)>,
    /// The spurious covariates and each cell's code.
    pub spur: Vec<(Covariate, Vec<u32>)>,
}

impl Data {
    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.counts.n_rows()
    }
    /// Width of the invariant one-hots.
    pub fn inv_dim(&self) -> usize {
        self.inv.iter().map(|(c, _)| c.levels.len()).sum()
    }
    /// Width of the spurious one-hots.
    pub fn spur_dim(&self) -> usize {
        self.spur.iter().map(|(c, _)| c.levels.len()).sum()
    }

    /// The covariate's codes against known `levels` (unknown values: `u32::MAX`).
    pub fn codes(values: &Categorical, levels: &[String]) -> Vec<u32> {
        let idx: HashMap<&str, u32> = levels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i as u32))
            .collect();
        let map: Vec<u32> = values
            .categories
            .iter()
            .map(|c| idx.get(c.as_str()).copied().unwrap_or(u32::MAX))
            .collect();
        values
            .codes
            .iter()
            .map(|&c| map.get(c as usize).copied().unwrap_or(u32::MAX))
            .collect()
    }

    fn onehots(block: &[(Covariate, Vec<u32>)], rows: &[usize]) -> Option<Vec<f32>> {
        let width: usize = block.iter().map(|(c, _)| c.levels.len()).sum();
        if width == 0 {
            return None;
        }
        let mut out = vec![0f32; rows.len() * width];
        for (k, &r) in rows.iter().enumerate() {
            let mut off = 0;
            for (c, codes) in block {
                let code = codes[r];
                if (code as usize) < c.levels.len() {
                    out[k * width + off + code as usize] = 1.0;
                }
                off += c.levels.len();
            }
        }
        Some(out)
    }

    /// The minibatch of `rows` on `dev`.
    pub fn batch(&self, rows: &[usize], dev: &Device) -> Result<Batch> {
        let g = self.counts.n_cols;
        Batch::new(
            self.counts.to_dense_rows(rows),
            rows.len(),
            g,
            Self::onehots(&self.inv, rows),
            Self::onehots(&self.spur, rows),
            dev,
        )
        .ce()
    }
}

/// Minibatches of an epoch over `n` cells: `batch_size` each, the last one partial (a
/// last batch of one cell joins the one before: batch norm needs two).
pub fn batch_bounds(n: usize, batch_size: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut s = 0;
    while s < n {
        let e = (s + batch_size).min(n);
        out.push((s, e));
        s = e;
    }
    if out.len() > 1 && out.last().map(|(s, e)| e - s) == Some(1) {
        let (_, e) = out.pop().unwrap_or((0, 0));
        if let Some(l) = out.last_mut() {
            l.1 = e;
        }
    }
    out
}

/// inVAE's columns of the training log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Terms {
    /// Mean NB negative log-likelihood per cell.
    pub recon: f64,
    /// Mean KL estimate per cell.
    pub kl: f64,
    /// The epoch's beta.
    pub beta: f64,
}

/// One row of the training log.
pub type LogRow = Row<Terms>;

/// Where a run stands (saved in `state.json`).
pub type Progress = state::Progress<LogRow>;

/// A training run: the network, Adam and progress ([`RunState`]), the data, and the
/// epoch in progress.
pub struct Trainer<'a> {
    s: RunState<Net, Params, Progress>,
    /// The training data.
    pub data: &'a Data,
    /// The device it trains on.
    pub device: Device,
    // The epoch in progress.
    order: Vec<usize>,
    bounds: Vec<(usize, usize)>,
    noise_rng: Rng,
    beta: f64,
    recon_sum: f64,
    kl_sum: f64,
    cells_seen: usize,
}

crate::engine::state::deref_run_state!(Trainer, RunState<Net, Params, Progress>);

impl<'a> Trainer<'a> {
    /// The network's shape for `params` on `data`.
    pub fn shape(params: &Params, data: &Data) -> Shape {
        Shape {
            n_genes: data.counts.n_cols,
            inv_dim: data.inv_dim(),
            spur_dim: data.spur_dim(),
            latent_inv: params.latent_inv,
            latent_spur: params.latent_spur,
            hidden: params.hidden,
            encoder_layers: params.encoder_layers,
            dropout: params.dropout,
            inject_spur: params.inject_spur,
            learned_prior_mean: params.learned_prior_mean,
        }
    }

    /// A run on `data` writing checkpoints beside `dir`: new weights, or (with `resume`)
    /// the newest checkpoint of `dir` when there is one.
    pub fn new(
        data: &'a Data,
        params: Params,
        fingerprint: String,
        dir: &Path,
        resume: bool,
        device: Device,
    ) -> Result<Self> {
        if data.n_cells() < 2 {
            bail!("{} cell(s): inVAE needs at least 2", data.n_cells());
        }
        let shape = Self::shape(&params, data);
        let (seed, adam, fresh) = (params.seed, params.adam(), Progress::new(params.epochs));
        let s = RunState::start(
            "invae",
            dir,
            resume,
            fingerprint,
            params,
            false,
            adam,
            |t| Net::from_tensors(&shape, t, &device),
            || Net::init(&shape, &mut engine::init_rng(seed), &device),
            fresh,
        )?;
        Ok(Trainer {
            s,
            data,
            device,
            order: Vec::new(),
            bounds: Vec::new(),
            noise_rng: Rng::new(0),
            beta: 0.0,
            recon_sum: 0.0,
            kl_sum: 0.0,
            cells_seen: 0,
        })
    }

    /// Posterior means of z for every cell (evaluation mode): cells x latent, row-major.
    pub fn posterior_means(&self) -> Result<Vec<f32>> {
        posterior_means(&self.s.net, self.data, &self.device)
    }
}

/// Posterior means of z (evaluation mode) of every cell of `data`, in chunks.
pub fn posterior_means(net: &Net, data: &Data, dev: &Device) -> Result<Vec<f32>> {
    const CHUNK: usize = 1024;
    let n = data.n_cells();
    let mut out = Vec::with_capacity(n * net.shape.latent());
    let mut s = 0;
    while s < n {
        let e = (s + CHUNK).min(n);
        let rows: Vec<usize> = (s..e).collect();
        let b = data.batch(&rows, dev)?;
        let g = net.posterior_mean(&b).ce()?;
        out.extend(
            g.to_device(&Device::Cpu)
                .ce()?
                .flatten_all()
                .ce()?
                .to_vec1::<f32>()
                .ce()?,
        );
        s = e;
    }
    Ok(out)
}

impl Trainable for Trainer<'_> {
    fn start_epoch(&mut self, e: usize) -> Result<usize> {
        self.order = engine::shuffled(self.s.params.seed, e, self.data.n_cells());
        self.noise_rng = engine::epoch_rng(self.s.params.seed, e, STREAM_NOISE);
        self.bounds = batch_bounds(self.order.len(), self.s.params.batch_size);
        self.beta = self.s.params.beta_at(e);
        self.recon_sum = 0.0;
        self.kl_sum = 0.0;
        self.cells_seen = 0;
        Ok(self.bounds.len())
    }

    fn step(&mut self, e: usize, s: usize) -> Result<(f64, usize)> {
        let (a, b) = self.bounds[s];
        let rows = &self.order[a..b];
        let batch = self.data.batch(rows, &self.device)?;
        let noise = Noise::draw(
            &self.s.net.shape,
            rows.len(),
            &mut self.noise_rng,
            &self.device,
        )
        .ce()?;
        let l = self.s.net.loss(&batch, &noise, self.beta).ce()?;
        let loss = l.loss.to_scalar::<f32>().ce()? as f64;
        if !loss.is_finite() {
            bail!(
                "the loss became {loss} at epoch {} step {}: lower --lr",
                e + 1,
                s + 1
            );
        }
        self.s.adam.step(&l.loss.backward().ce()?).ce()?;
        self.s.net.update_running(l.stats).ce()?;
        self.s.progress.steps += 1;
        let n = rows.len();
        self.recon_sum += l.recon.to_scalar::<f32>().ce()? as f64 * n as f64;
        self.kl_sum += l.kl.to_scalar::<f32>().ce()? as f64 * n as f64;
        self.cells_seen += n;
        Ok((loss, n))
    }

    fn end_epoch(&mut self, r: &EpochRecord) -> Result<Option<String>> {
        let n = self.cells_seen.max(1) as f64;
        let row = Row::new(
            r,
            Terms {
                recon: self.recon_sum / n,
                kl: self.kl_sum / n,
                beta: self.beta,
            },
        );
        let line = format!(
            "invae epoch {}/{}: loss {:.3} (nll {:.3}, kl {:.3}, beta {:.3}; {} steps, {:.2} s)",
            r.epoch,
            self.s.progress.end_epoch,
            row.loss,
            row.recon,
            row.kl,
            row.beta,
            r.steps,
            r.seconds
        );
        self.s.progress.record(r, row);
        Ok(Some(line))
    }

    fn checkpoint(&mut self) -> Result<()> {
        self.s.checkpoint()
    }
}

/// Run the schedule of `t` (until `stop_after` global epochs, as if killed, when given);
/// returns whether it is complete.
pub fn run(t: &mut Trainer, checkpoint_every: usize, stop_after: Option<usize>) -> Result<bool> {
    let schedule = Schedule::remaining(&t.progress, checkpoint_every, stop_after, "invae");
    Ok(engine::fit(t, &schedule)?.complete)
}

/// The `[z_inv | z_spur]` split of posterior means (cells x latent): two row-major blocks.
pub fn split(z: &[f32], latent_inv: usize, latent_spur: usize) -> (Vec<f32>, Vec<f32>) {
    let d = latent_inv + latent_spur;
    let mut a = Vec::with_capacity(z.len() / d.max(1) * latent_inv);
    let mut b = Vec::with_capacity(z.len() / d.max(1) * latent_spur);
    for row in z.chunks_exact(d.max(1)) {
        a.extend_from_slice(&row[..latent_inv]);
        b.extend_from_slice(&row[latent_inv..]);
    }
    (a, b)
}
