//! MEDL training on the engine: per minibatch the adversary step, the fixed-effects
//! autoencoder step and the random-effects step; checkpoints that resume bit for bit.
//!
//! Randomness: initial weights from `Rng::derive(seed, [INIT])`; epoch `e` shuffles the
//! cells with `Rng::derive(seed, [e, SHUFFLE])` and draws the random-effect weight noise
//! from `Rng::derive(seed, [e, NOISE])`, so a checkpoint only needs the epoch counter.

use crate::engine::log::{LogTable, Row};
use candle_core::{Device, Tensor};
use cellweave::contract::{Frame, Step};
use cellweave::io::rows::Rows;
use cellweave::{bail, Error, Result};

use super::layers::{cross_entropy, mse, Pass};
use super::net::{one_hot, Arch, Effects, Encoded, Medl};
use super::scaling::Scaling;
use crate::engine::checkpoint::Checkpoints;
use crate::engine::{self, EpochRecord, Trainable};
use crate::optim::{Adam, AdamConfig};
use crate::rng::Rng;
use crate::CandleExt;

const STREAM_NOISE: u64 = 2;

/// Epochs when `--epochs` is not given: the authors' 500 (scMEDAL's training configuration,
/// there with early stopping on a validation split), bounded in steps by [`MIN_STEPS`] and
/// [`MAX_STEPS`] ([`default_epochs`]).
pub const DEFAULT_EPOCHS: usize = 500;
/// The fewest steps a run with automatic epochs takes (small data sets).
pub const MIN_STEPS: usize = 1500;
/// The most steps a run with automatic epochs takes (whole epochs, at least one), so that
/// the length stops growing with the number of cells.
pub const MAX_STEPS: usize = 6000;

/// The epochs of a run on `n` cells in minibatches of `batch_size` when `--epochs` is not
/// given: [`DEFAULT_EPOCHS`], cut to [`MAX_STEPS`] and raised to [`MIN_STEPS`].
pub fn default_epochs(n: usize, batch_size: usize) -> usize {
    let (spe, _) = batching(n, batch_size);
    engine::auto_epochs(DEFAULT_EPOCHS, MIN_STEPS, MAX_STEPS, spe)
}

/// Everything that decides the result of a training run (recorded in the model card).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MedlParams {
    /// Epochs of the run.
    pub epochs: usize,
    /// Cells per minibatch.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Adam L2 weight decay.
    pub weight_decay: f64,
    /// Width of the FE and RE latents.
    pub latent: usize,
    /// Fixed effects: weight of the reconstruction MSE.
    pub lambda_rec: f64,
    /// Fixed effects: weight of the adversary's cross-entropy (subtracted).
    pub lambda_adv: f64,
    /// Random effects: weight of the reconstruction MSE.
    pub re_rec: f64,
    /// Random effects: weight of the latent batch classifier's cross-entropy.
    pub re_ce: f64,
    /// Random effects: weight of the KL term of the variational weights.
    pub kl_weight: f64,
    /// Seed of the initial weights, the shuffles and the noise.
    pub seed: u64,
}

impl Default for MedlParams {
    fn default() -> Self {
        MedlParams {
            epochs: DEFAULT_EPOCHS,
            batch_size: 512,
            lr: 1e-4,
            weight_decay: 0.0,
            latent: 50,
            lambda_rec: 1000.0,
            lambda_adv: 1.0,
            re_rec: 110.0,
            re_ce: 0.1,
            kl_weight: 1e-5,
            seed: 0,
        }
    }
}

impl MedlParams {
    /// Adam's settings (L2 weight decay).
    pub fn adam(&self) -> AdamConfig {
        AdamConfig::l2(self.lr, self.weight_decay)
    }
    /// Refuse parameters MEDL cannot train with (naming the flag).
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: &str| Err(Error::new(m.to_string()).field(f.to_string()));
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1");
        }
        crate::engine::check_batch_and_lr(self.batch_size, self.lr)?;
        if self.latent == 0 {
            return bad("latent", "must be at least 1");
        }
        for (f, v) in [
            ("lambda-rec", self.lambda_rec),
            ("lambda-adv", self.lambda_adv),
            ("re-rec", self.re_rec),
            ("re-ce", self.re_ce),
            ("kl-weight", self.kl_weight),
            ("weight-decay", self.weight_decay),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(f, "must be a non-negative number");
            }
        }
        Ok(())
    }
}

/// MEDL's losses of a step, and their per-epoch means in the training log (its `loss` is
/// the FE autoencoder loss + the RE loss).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Terms {
    /// The adversary's cross-entropy in its own step (it minimizes it).
    pub adversary_ce: f64,
    /// The adversary's cross-entropy in the autoencoder step (the autoencoder maximizes it).
    pub fe_adversarial_ce: f64,
    /// The FE autoencoder's reconstruction MSE.
    pub fe_mse: f64,
    /// `lambda_rec * fe_mse - lambda_adv * fe_adversarial_ce`.
    pub fe_loss: f64,
    /// The RE autoencoder's reconstruction MSE.
    pub re_mse: f64,
    /// The latent batch classifier's cross-entropy.
    pub re_ce: f64,
    /// KL of the random-effect weights.
    pub re_kl: f64,
    /// `re_rec * re_mse + re_ce * re_ce + kl_weight * re_kl`.
    pub re_loss: f64,
}

impl Terms {
    fn add(&mut self, o: &Terms) {
        self.adversary_ce += o.adversary_ce;
        self.fe_adversarial_ce += o.fe_adversarial_ce;
        self.fe_mse += o.fe_mse;
        self.fe_loss += o.fe_loss;
        self.re_mse += o.re_mse;
        self.re_ce += o.re_ce;
        self.re_kl += o.re_kl;
        self.re_loss += o.re_loss;
    }
    fn scaled(&self, s: f64) -> Terms {
        Terms {
            adversary_ce: self.adversary_ce * s,
            fe_adversarial_ce: self.fe_adversarial_ce * s,
            fe_mse: self.fe_mse * s,
            fe_loss: self.fe_loss * s,
            re_mse: self.re_mse * s,
            re_ce: self.re_ce * s,
            re_kl: self.re_kl * s,
            re_loss: self.re_loss * s,
        }
    }
}

/// One row of the training log.
pub type LogRow = Row<Terms>;

/// Where a run stands (saved in `state.json`).
pub type Progress = crate::engine::state::Progress<LogRow>;

/// The three optimisers: adversary, FE autoencoder, RE autoencoder + classifier.
pub struct Optimisers {
    /// The adversary's optimiser.
    pub adversary: Adam,
    /// The FE autoencoder's optimiser.
    pub fe: Adam,
    /// The RE autoencoder's and the classifier's optimiser.
    pub re: Adam,
}

impl Optimisers {
    /// New optimisers of `m`'s variables.
    pub fn new(m: &Medl, cfg: AdamConfig) -> Result<Self> {
        let vars = |n: super::layers::Named| n.into_iter().map(|(_, v)| v).collect();
        Ok(Optimisers {
            adversary: Adam::new(vars(m.named_adversary()), cfg).ce()?,
            fe: Adam::new(vars(m.named_fe()), cfg).ce()?,
            re: Adam::new(vars(m.named_re()), cfg).ce()?,
        })
    }
    /// The three optimisers' moments, by name.
    pub fn state(&self) -> Result<std::collections::HashMap<String, Tensor>> {
        let mut s = self.adversary.state("adam.adversary.").ce()?;
        s.extend(self.fe.state("adam.fe.").ce()?);
        s.extend(self.re.state("adam.re.").ce()?);
        Ok(s)
    }
    /// Restore the three optimisers' moments from `t`.
    pub fn load(&mut self, t: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        self.adversary.load_state("adam.adversary.", t).ce()?;
        self.fe.load_state("adam.fe.", t).ce()?;
        self.re.load_state("adam.re.", t).ce()
    }
}

/// One minibatch on the device: scaled inputs, one-hot batches, batch codes.
pub struct Minibatch {
    /// Scaled inputs (`B x G`).
    pub x: Tensor,
    /// One-hot batches (`B x K`).
    pub z: Tensor,
    /// Batch codes (`B`).
    pub codes: Tensor,
}

impl Minibatch {
    /// The minibatch of `rows` of `x` (scaled) and their batches, on `dev`.
    pub fn gather(
        x: &dyn Rows,
        scaling: &Scaling,
        batch: &[u32],
        rows: &[usize],
        n_batches: usize,
        dev: &Device,
    ) -> Result<Self> {
        let mut dense = x.to_dense_rows(rows);
        scaling.apply(&mut dense);
        let codes: Vec<u32> = rows.iter().map(|&r| batch[r]).collect();
        Ok(Minibatch {
            x: Tensor::from_vec(dense, (rows.len(), x.n_cols()), dev).ce()?,
            z: one_hot(&codes, n_batches, dev).ce()?,
            codes: Tensor::from_vec(codes, rows.len(), dev).ce()?,
        })
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(candle_core::DType::F64)
        .ce()?
        .to_scalar::<f64>()
        .ce()
}

/// One training step on a minibatch: the adversary step, the FE autoencoder step, the RE
/// step (noise from `rng`). Returns the step's losses.
pub fn train_step(
    m: &mut Medl,
    opt: &mut Optimisers,
    p: &MedlParams,
    b: &Minibatch,
    rng: &mut Rng,
) -> Result<Terms> {
    let dev = b.x.device().clone();
    // Fixed effects. One encoder pass serves both steps (the encoder does not change in
    // between); the adversary step sees it detached.
    let enc = m.fe.encode(&b.x, Pass::Train).ce()?;
    let fixed = Encoded {
        acts: enc.acts.iter().map(|a| a.detach()).collect(),
    };
    let adv_ce = cross_entropy(&m.adversary_logits(&fixed).ce()?, &b.codes).ce()?;
    opt.adversary.step(&adv_ce.backward().ce()?).ce()?;
    let recon = m.fe.decode(enc.latent(), Pass::Train).ce()?;
    let fe_mse = mse(&recon, &b.x).ce()?;
    let fe_ce = cross_entropy(&m.adversary_logits(&enc).ce()?, &b.codes).ce()?;
    let fe_loss = ((&fe_mse * p.lambda_rec).ce()? - (&fe_ce * p.lambda_adv).ce()?).ce()?;
    opt.fe.step(&fe_loss.backward().ce()?).ce()?;
    // Random effects.
    let noise = m.re.noise(rng, &dev).ce()?;
    let effects = Effects {
        z: &b.z,
        noise: Some(&noise),
    };
    let re = m.re.encode(&b.x, effects, Pass::Train).ce()?;
    let re_recon = m.re.decode(re.latent(), effects, Pass::Train).ce()?;
    let re_mse = mse(&re_recon, &b.x).ce()?;
    let re_ce = cross_entropy(&m.classifier.forward(re.latent()).ce()?, &b.codes).ce()?;
    let re_kl = m.re.kl().ce()?;
    let re_loss = (((&re_mse * p.re_rec).ce()? + (&re_ce * p.re_ce).ce()?).ce()?
        + (&re_kl * p.kl_weight).ce()?)
    .ce()?;
    opt.re.step(&re_loss.backward().ce()?).ce()?;
    Ok(Terms {
        adversary_ce: scalar(&adv_ce)?,
        fe_adversarial_ce: scalar(&fe_ce)?,
        fe_mse: scalar(&fe_mse)?,
        fe_loss: scalar(&fe_loss)?,
        re_mse: scalar(&re_mse)?,
        re_ce: scalar(&re_ce)?,
        re_kl: scalar(&re_kl)?,
        re_loss: scalar(&re_loss)?,
    })
}

/// Minibatches per epoch and their size for `n` cells (the last partial batch is
/// dropped when there is more than one batch: batch norm needs rows).
pub fn batching(n: usize, batch_size: usize) -> (usize, usize) {
    let b = batch_size.min(n);
    (n / b.max(1), b)
}

/// Writes a checkpoint's files of a run into a folder.
pub type SaveFn = dyn Fn(&Run, &std::path::Path) -> Result<()>;

/// The state of a run the engine trains.
pub struct Run<'a> {
    /// The network.
    pub model: Medl,
    /// Its optimisers.
    pub opt: Optimisers,
    /// Every parameter of the run.
    pub params: MedlParams,
    /// Where the run stands.
    pub progress: Progress,
    /// The training cells (unscaled).
    pub x: &'a dyn Rows,
    /// Each cell's batch code.
    pub batch: &'a [u32],
    /// The input scaling.
    pub scaling: Scaling,
    /// The device it trains on.
    pub device: Device,
    /// Where checkpoints go (`None`: never).
    pub ckpt: Option<Checkpoints>,
    /// Writes a checkpoint's files into a folder.
    pub save: Option<&'a SaveFn>,
    order: Vec<usize>,
    size: usize,
    rng_noise: Rng,
    acc: Terms,
}

impl<'a> Run<'a> {
    /// A run of `model` from `progress` on the cells `x` of batches `batch`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: Medl,
        opt: Optimisers,
        params: MedlParams,
        progress: Progress,
        x: &'a dyn Rows,
        batch: &'a [u32],
        scaling: Scaling,
        device: Device,
    ) -> Self {
        Run {
            model,
            opt,
            params,
            progress,
            x,
            batch,
            scaling,
            device,
            ckpt: None,
            save: None,
            order: Vec::new(),
            size: 0,
            rng_noise: Rng::derive(0, &[]),
            acc: Terms::default(),
        }
    }
}

impl Trainable for Run<'_> {
    fn start_epoch(&mut self, e: usize) -> Result<usize> {
        let n = self.x.n_rows();
        self.order = engine::shuffled(self.params.seed, e, n);
        self.rng_noise = engine::epoch_rng(self.params.seed, e, STREAM_NOISE);
        self.acc = Terms::default();
        let (steps, size) = batching(n, self.params.batch_size);
        self.size = size;
        Ok(steps)
    }

    fn step(&mut self, e: usize, s: usize) -> Result<(f64, usize)> {
        let rows = &self.order[s * self.size..(s + 1) * self.size];
        let b = Minibatch::gather(
            self.x,
            &self.scaling,
            self.batch,
            rows,
            self.model.arch.n_batches,
            &self.device,
        )?;
        let r = train_step(
            &mut self.model,
            &mut self.opt,
            &self.params,
            &b,
            &mut self.rng_noise,
        )?;
        let loss = r.fe_loss + r.re_loss;
        if !loss.is_finite() {
            bail!(
                "the loss became {loss} at epoch {} step {}: lower --lr",
                e + 1,
                s + 1
            );
        }
        self.acc.add(&r);
        self.progress.steps += 1;
        Ok((loss, 1))
    }

    fn end_epoch(&mut self, r: &EpochRecord) -> Result<Option<String>> {
        let row = Row::new(r, self.acc.scaled(1.0 / r.steps.max(1) as f64));
        let line = format!(
            "medl epoch {}/{}: adversary CE {:.4} | FE mse {:.5} adversarial CE {:.4} | RE mse {:.5} batch CE {:.4} KL {:.1} ({} steps, {:.2} s)",
            r.epoch,
            self.progress.end_epoch,
            row.adversary_ce,
            row.fe_mse,
            row.fe_adversarial_ce,
            row.re_mse,
            row.re_ce,
            row.re_kl,
            r.steps,
            r.seconds
        );
        self.progress.record(r, row);
        Ok(Some(line))
    }

    fn checkpoint(&mut self) -> Result<()> {
        let (Some(ckpt), Some(save)) = (&self.ckpt, self.save) else {
            return Ok(());
        };
        ckpt.save(self.progress.epoch, |d| save(self, d))
    }
}

/// The training log as a table.
pub fn log_frame(p: &Progress, fingerprint: String, step: &Step) -> Frame {
    LogTable::epochs("medl", &p.log)
        .value("adversary_ce", |r| r.adversary_ce)
        .value("fe_adversarial_ce", |r| r.fe_adversarial_ce)
        .value("fe_mse", |r| r.fe_mse)
        .value("fe_loss", |r| r.fe_loss)
        .value("re_mse", |r| r.re_mse)
        .value("re_ce", |r| r.re_ce)
        .value("re_kl", |r| r.re_kl)
        .value("re_loss", |r| r.re_loss)
        .end(fingerprint, step)
}

/// A new model and its optimisers for `arch` and `params`.
pub fn fresh(arch: &Arch, params: &MedlParams, dev: &Device) -> Result<(Medl, Optimisers)> {
    let mut rng = engine::init_rng(params.seed);
    let m = Medl::init(arch, &mut rng, dev).ce()?;
    let opt = Optimisers::new(&m, params.adam())?;
    Ok((m, opt))
}
