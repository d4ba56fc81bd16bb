//! The frozen autoencoder of the batch-corrected scETM's pair term (`--pair-space
//! autoencoder`): `Linear(G, c) ReLU` / `Linear(c, G) ReLU` (c = 50), pre-trained with the
//! mean squared error, then frozen; deepMNN's pair term then compares the encoder's codes
//! of the two corrected cells of a pair instead of their principal components.
//!
//! Input scale: the autoencoder is pre-trained on the log1p values of the HVG table, not
//! on deepMNN's z-scored ones. Its decoder ends in a ReLU, so it can only give
//! non-negative values: on z-scored input (about half of every gene's values negative) no
//! weights reconstruct the negative half and the error it is trained on is mostly that
//! floor; on log1p values every target is reachable. The network corrects the z-scored
//! values, so the pair term reads a corrected cell `y` through the encoder as the
//! autoencoder saw it: `E(y * sd + mean)`, the per-gene scaling undone. That is an affine
//! map of `y`, so the scaling folds into the encoder once ([`Autoencoder::folded`]):
//! `E(y sd + mean) = ReLU(y (diag(sd) W^T) + (W mean + b))`.
//!
//! Pre-training runs on the engine ([`engine::fit`]) with Adam: every epoch shuffles the
//! cells (`Rng::derive(seed, [e, STREAM_AE_SHUFFLE])`) and cuts them into minibatches
//! (the last one shorter); the weights start as torch's `nn.Linear`
//! (`Rng::derive(seed, [STREAM_AE_INIT])`). Same seed, same weights.

use candle_core::{Device, Tensor, Var};
use cellweave::integrate::deepmnn::Scaling;
use cellweave::{bail, Error, Result};

use crate::engine::checkpoint::named_tensor;
use crate::engine::optim::{Adam, AdamConfig};
use crate::engine::state::Tensors;
use crate::engine::{self, EpochRecord, Schedule, Trainable};
use crate::nn::torch_uniform;
use crate::rng::Rng;
use crate::CandleExt;

/// The random stream of the autoencoder's initial weights.
const STREAM_AE_INIT: u64 = 11;
/// The random stream of the autoencoder's shuffles.
const STREAM_AE_SHUFFLE: u64 = 12;

/// Names of the autoencoder's tensors in the model (and checkpoints), in [`Autoencoder::vars`]
/// order: encoder weight `[c, G]` and bias, decoder weight `[G, c]` and bias.
pub const NAMES: [&str; 4] = [
    "pair_autoencoder.encoder.weight",
    "pair_autoencoder.encoder.bias",
    "pair_autoencoder.decoder.weight",
    "pair_autoencoder.decoder.bias",
];

/// How the autoencoder is pre-trained (recorded in the model card).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AeParams {
    /// Units of the code (the method's 50).
    pub latent: usize,
    /// Epochs of pre-training.
    pub epochs: usize,
    /// Adam's learning rate (no weight decay).
    pub lr: f64,
    /// Cells per minibatch.
    pub batch_size: usize,
}

impl Default for AeParams {
    fn default() -> Self {
        AeParams {
            latent: 50,
            epochs: 100,
            lr: 1e-3,
            batch_size: 128,
        }
    }
}

impl AeParams {
    /// Refuse parameters it cannot train with (naming the flag).
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: &str| Err(Error::new(m.to_string()).flag(f));
        if self.latent == 0 {
            return bad("--ae-latent", "must be at least 1");
        }
        if self.epochs == 0 {
            return bad("--ae-epochs", "must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("--ae-lr", "must be a positive number");
        }
        if self.batch_size < 2 {
            return bad("--ae-batch-size", "must be at least 2");
        }
        Ok(())
    }
}

/// The autoencoder: `[encoder weight, encoder bias, decoder weight, decoder bias]`.
pub struct Autoencoder {
    /// Genes (input and output width).
    pub n_genes: usize,
    /// Units of the code.
    pub latent: usize,
    /// Its variables, [`NAMES`] order.
    pub vars: Vec<Var>,
}

fn linear_relu(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.matmul(&w.t()?)?.broadcast_add(b)?.relu()
}

impl Autoencoder {
    fn dims(g: usize, c: usize) -> [Vec<usize>; 4] {
        [vec![c, g], vec![c], vec![g, c], vec![g]]
    }

    /// New weights as torch's `nn.Linear` draws them.
    pub fn init(g: usize, c: usize, rng: &mut Rng, device: &Device) -> candle_core::Result<Self> {
        let fan_in = [g, g, c, c];
        let vars = Self::dims(g, c)
            .into_iter()
            .zip(fan_in)
            .map(|(d, f)| {
                let v = torch_uniform(rng, d.iter().product(), f);
                Var::from_tensor(&Tensor::from_vec(v, d, device)?)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Autoencoder {
            n_genes: g,
            latent: c,
            vars,
        })
    }

    fn v(&self, i: usize) -> &Tensor {
        self.vars[i].as_tensor()
    }

    /// The codes of rows `x`: `ReLU(x W^T + b)`.
    pub fn encode(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        linear_relu(x, self.v(0), self.v(1))
    }

    /// The mean squared error of the reconstruction of `x` (torch's `MSELoss`: the mean
    /// over every value).
    pub fn mse(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let rec = linear_relu(&self.encode(x)?, self.v(2), self.v(3))?;
        (rec - x)?.sqr()?.mean_all()
    }

    /// Its tensors by name, on the CPU.
    pub fn named(&self) -> candle_core::Result<Tensors> {
        NAMES
            .iter()
            .zip(&self.vars)
            .map(|(n, v)| Ok((n.to_string(), v.as_tensor().to_device(&Device::Cpu)?)))
            .collect()
    }

    /// Rebuild from [`Autoencoder::named`]'s tensors, checking every shape.
    pub fn from_named(
        t: &Tensors,
        g: usize,
        c: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let vars = NAMES
            .iter()
            .zip(Self::dims(g, c))
            .map(|(n, d)| Var::from_tensor(&named_tensor(t, n, &d, true)?.to_device(device)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Autoencoder {
            n_genes: g,
            latent: c,
            vars,
        })
    }

    /// The frozen encoder read on the scaled values, `E(y sd + mean)`, as the weights of
    /// one `ReLU(y w_t + b)` layer: `(w_t, b)` = `(diag(sd) W^T, W mean + b)`, `g x c` and
    /// `c` (module documentation); detached from the autoencoder's variables.
    pub fn folded(&self, scaling: &Scaling, device: &Device) -> Result<(Tensor, Tensor)> {
        let (g, c) = (self.n_genes, self.latent);
        let host = |t: &Tensor| t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>();
        let w = host(self.v(0)).ce()?;
        let b = host(self.v(1)).ce()?;
        let mut w_t = vec![0f32; g * c];
        let mut bias = vec![0f32; c];
        for k in 0..c {
            let row = &w[k * g..(k + 1) * g];
            let mut s = b[k] as f64;
            for j in 0..g {
                w_t[j * c + k] = row[j] * scaling.sd[j];
                s += row[j] as f64 * scaling.mean[j] as f64;
            }
            bias[k] = s as f32;
        }
        Ok((
            Tensor::from_vec(w_t, (g, c), device).ce()?,
            Tensor::from_vec(bias, c, device).ce()?,
        ))
    }
}

/// Pre-train an autoencoder of `params.latent` units on the dense rows `x` (`n x g`, the
/// log1p values) with the engine's loop and Adam; returns it and each epoch's mean squared
/// error.
pub fn pretrain(
    x: &[f32],
    g: usize,
    params: &AeParams,
    seed: u64,
    device: &Device,
) -> Result<(Autoencoder, Vec<f64>)> {
    params.validate()?;
    let n = x.len() / g.max(1);
    if n < 2 {
        bail!("the autoencoder needs at least 2 cells");
    }
    let ae = Autoencoder::init(
        g,
        params.latent,
        &mut Rng::derive(seed, &[STREAM_AE_INIT]),
        device,
    )
    .ce()?;
    let adam = Adam::new(ae.vars.clone(), AdamConfig::l2(params.lr, 0.0)).ce()?;
    let mut run = Pretrain {
        ae,
        adam,
        x,
        g,
        params,
        seed,
        device,
        order: Vec::new(),
        mse: Vec::new(),
    };
    let schedule = Schedule::epochs(0, params.epochs, 0, None, "autoencoder");
    engine::fit(&mut run, &schedule)?;
    Ok((run.ae, run.mse))
}

/// The pre-training run on the engine.
struct Pretrain<'a> {
    ae: Autoencoder,
    adam: Adam,
    x: &'a [f32],
    g: usize,
    params: &'a AeParams,
    seed: u64,
    device: &'a Device,
    order: Vec<usize>,
    mse: Vec<f64>,
}

impl Trainable for Pretrain<'_> {
    fn start_epoch(&mut self, e: usize) -> Result<usize> {
        self.order = (0..self.x.len() / self.g).collect();
        engine::epoch_rng(self.seed, e, STREAM_AE_SHUFFLE).shuffle(&mut self.order);
        Ok(self.order.len().div_ceil(self.params.batch_size))
    }

    fn step(&mut self, _e: usize, b: usize) -> Result<(f64, usize)> {
        let (bs, g) = (self.params.batch_size, self.g);
        let rows = &self.order[b * bs..((b + 1) * bs).min(self.order.len())];
        let mut xs = Vec::with_capacity(rows.len() * g);
        for &r in rows {
            xs.extend_from_slice(&self.x[r * g..(r + 1) * g]);
        }
        let x = Tensor::from_vec(xs, (rows.len(), g), self.device).ce()?;
        let loss = self.ae.mse(&x).ce()?;
        let v = loss.to_scalar::<f32>().ce()? as f64;
        if !v.is_finite() {
            return Err(
                Error::new(format!("the autoencoder's loss became {v}: lower --ae-lr"))
                    .flag("--ae-lr"),
            );
        }
        self.adam.step(&loss.backward().ce()?).ce()?;
        Ok((v, rows.len()))
    }

    fn end_epoch(&mut self, r: &EpochRecord) -> Result<Option<String>> {
        self.mse.push(r.train_loss);
        Ok(Some(format!(
            "deepmnn autoencoder epoch {}/{}: mse {:.5} ({} steps, {:.2} s)",
            r.epoch, self.params.epochs, r.train_loss, r.steps, r.seconds
        )))
    }
}
