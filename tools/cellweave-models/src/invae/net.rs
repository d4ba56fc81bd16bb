//! inVAE's networks and its loss (negative ELBO), in candle ops with autograd: any device.
//!
//! Layer names and order follow the reference package (`inVAE` 0.1.0, `FinVAEmodule` with
//! `fix_mean_prior=True, fix_var_prior=False, decoder_dist='nb', elbo_version='sample'`):
//!
//! - encoder: `[log(x+1), inv one-hots, spur one-hots]` -> `encoder_layers` x (Linear
//!   `hidden`, BN, ReLU, Dropout) -> `mean` and `logvar` heads (Linear); `v = exp(logvar) +
//!   1e-4`.
//! - decoder: `z` -> Linear `hidden`, BN, ReLU, Dropout -> Linear `hidden`, BN, Dropout (no
//!   activation, as the reference MLP's last layer) -> `freq` Linear `G` -> softmax; NB mean =
//!   softmax x library (the cell's total count over the model's genes); inverse dispersion
//!   `exp(theta_raw)` per gene.
//! - priors: `p(z_inv | u_inv) = N(0, exp(MLP(u_inv)) + 1e-4)` with the MLP Linear `hidden`,
//!   BN, ReLU, Dropout -> Linear `d`, BN, Dropout; the same for `z_spur | u_spur`; `N(0, 1)`
//!   for a block without covariates. With `learned_prior_mean` (the reference's
//!   `fix_mean_prior=False`): `h = ` Linear `hidden`, BN, ReLU, Dropout of `u`, then
//!   `N(Linear_mean(h), exp(Linear_logl(h)) + 1e-4)`.
//! - with `inject_spur` (the reference's `inject_covar_in_latent=True`): no `z_spur` block and
//!   no spurious prior; the decoder reads `[z_inv, spur one-hots]` instead of `z`.
//! - loss: `-mean_cells[log NB(x | mu, theta) + beta (log p(z_inv|u_inv) +
//!   log p(z_spur|u_spur) - log q(z|x,u))]` with one reparameterised sample `z = g + eps
//!   sqrt(v)`.
//!
//! Batch norm: torch's `BatchNorm1d(momentum=0.01, eps=0.001)`: batch statistics (biased
//! variance) in training, running statistics (unbiased variance) in evaluation.
//!
//! `log Gamma` is not a candle op: [`lgamma`] composes it from candle ops (six recurrence
//! steps, then Stirling's series), so autograd differentiates it on every device.

use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;

use crate::rng::Rng;

pub use super::nb::ln_gamma;
use super::nb::LOG_2PI;
/// Added to the variances (as the reference).
pub const VAR_EPS: f64 = 1e-4;
const BN_EPS: f64 = 1e-3;
const BN_MOMENTUM: f64 = 0.01;

/// Network sizes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    /// Genes (columns of the counts).
    pub n_genes: usize,
    /// One-hot width of the invariant covariates (0: N(0, 1) prior).
    pub inv_dim: usize,
    /// One-hot width of the spurious covariates (0: N(0, 1) prior).
    pub spur_dim: usize,
    /// Dimensions of the invariant latent block z_inv.
    pub latent_inv: usize,
    /// Dimensions of the spurious latent block z_spur (0 with `inject_spur`).
    pub latent_spur: usize,
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Hidden layers of the encoder (the reference's `n_layers - 1`).
    pub encoder_layers: usize,
    /// Dropout probability of the hidden blocks.
    pub dropout: f32,
    /// The spurious one-hots go to the decoder (`latent_spur` is 0, no spurious prior).
    #[serde(default)]
    pub inject_spur: bool,
    /// The priors' means are learned from the covariates too (the reference's
    /// `fix_mean_prior=False`): a shared block, then `mean` and `logl` linear heads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub learned_prior_mean: bool,
}

impl Shape {
    /// Width of z: `latent_inv + latent_spur`.
    pub fn latent(&self) -> usize {
        self.latent_inv + self.latent_spur
    }

    /// Width of the decoder's input: `z`, plus the spurious one-hots with `inject_spur`.
    pub fn decoder_input(&self) -> usize {
        self.latent() + if self.inject_spur { self.spur_dim } else { 0 }
    }

    /// The blocks (Linear, BN, optional ReLU, Dropout) in forward order: (name, in, out,
    /// relu). The dropout masks of a step are drawn in this order.
    pub fn blocks(&self) -> Vec<(String, usize, usize, bool)> {
        let h = self.hidden;
        let mut b = Vec::new();
        for (name, dim, latent) in self.priors() {
            b.push((format!("{name}.0"), dim, h, true));
            if !self.learned_prior_mean {
                b.push((format!("{name}.1"), h, latent, false));
            }
        }
        let mut input = self.n_genes + self.inv_dim + self.spur_dim;
        for l in 0..self.encoder_layers {
            b.push((format!("encoder.{l}"), input, h, true));
            input = h;
        }
        b.push(("decoder.0".into(), self.decoder_input(), h, true));
        b.push(("decoder.1".into(), h, h, false));
        b
    }

    /// The covariate priors: (name, one-hot width, latent block width).
    fn priors(&self) -> Vec<(&'static str, usize, usize)> {
        let mut p = Vec::new();
        if self.inv_dim > 0 {
            p.push(("prior_inv", self.inv_dim, self.latent_inv));
        }
        if self.spur_dim > 0 && !self.inject_spur {
            p.push(("prior_spur", self.spur_dim, self.latent_spur));
        }
        p
    }

    /// Plain linear heads: (name, in, out).
    fn heads(&self) -> Vec<(String, usize, usize)> {
        let enc_out = if self.encoder_layers == 0 {
            self.n_genes + self.inv_dim + self.spur_dim
        } else {
            self.hidden
        };
        let mut heads = vec![
            ("mean".to_string(), enc_out, self.latent()),
            ("logvar".to_string(), enc_out, self.latent()),
            ("freq".to_string(), self.hidden, self.n_genes),
        ];
        if self.learned_prior_mean {
            for (name, _, latent) in self.priors() {
                heads.push((format!("{name}.mean"), self.hidden, latent));
                heads.push((format!("{name}.logl"), self.hidden, latent));
            }
        }
        heads
    }
}

/// The parameters (autograd variables) and batch-norm running statistics.
pub struct Net {
    /// The sizes the network was built with.
    pub shape: Shape,
    /// Trainable parameters by name, in a fixed order (the optimiser's order).
    pub params: Vec<(String, Var)>,
    index: HashMap<String, usize>,
    /// `<block>.bn.running_mean` / `.running_var`.
    pub buffers: HashMap<String, Tensor>,
}

/// What one training forward needs besides the data: dropout masks (one per block, in
/// [`Shape::blocks`] order; `None`: no dropout) and the reparameterisation noise `eps`
/// (cells x latent).
pub struct Noise {
    /// Dropout masks, one per block in [`Shape::blocks`] order (`None`: no dropout).
    pub masks: Option<Vec<Tensor>>,
    /// Standard normal noise of the reparameterisation (cells x latent).
    pub eps: Tensor,
}

/// Standard normal by Box-Muller (two uniforms per draw: simple and reproducible).
pub fn gauss(rng: &mut Rng) -> f32 {
    let u1 = 1.0 - rng.f64(); // (0, 1]
    let u2 = rng.f64();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

impl Noise {
    /// Masks and noise for `n` cells, drawn from `rng` (masks first, block by block).
    pub fn draw(shape: &Shape, n: usize, rng: &mut Rng, dev: &Device) -> candle_core::Result<Self> {
        let masks = if shape.dropout > 0.0 {
            let mut out = Vec::new();
            for (_, _, width, _) in shape.blocks() {
                let mut m = vec![0f32; n * width];
                rng.dropout_mask(&mut m, shape.dropout);
                out.push(Tensor::from_vec(m, (n, width), dev)?);
            }
            Some(out)
        } else {
            None
        };
        let eps: Vec<f32> = (0..n * shape.latent()).map(|_| gauss(rng)).collect();
        Ok(Noise {
            masks,
            eps: Tensor::from_vec(eps, (n, shape.latent()), dev)?,
        })
    }
}

/// One minibatch on the device: counts (cells x genes), the covariates' one-hots, and the
/// constant `sum_g lgamma(x + 1)` per cell.
pub struct Batch {
    /// Counts (cells x genes).
    pub x: Tensor,
    /// The encoder's input `[log(x + 1), inv one-hots, spur one-hots]` (cells x (genes +
    /// levels)), built once with the batch.
    pub encoder_input: Tensor,
    /// One-hots of the invariant covariates (cells x levels), if any.
    pub inv: Option<Tensor>,
    /// One-hots of the spurious covariates (cells x levels), if any.
    pub spur: Option<Tensor>,
    /// `sum over the batch of lgamma(x + 1)` (a constant of the loss).
    pub lgamma_x1: f64,
    /// Each cell's total count over the model's genes (cells x 1).
    pub library: Tensor,
    /// The non-zero counts and their genes: `lgamma(x + theta) - lgamma(theta)` is zero
    /// where `x = 0`, so the loss evaluates it at these entries only.
    pub nz_values: Tensor,
    /// The gene (column) of each entry of `nz_values`.
    pub nz_genes: Tensor,
}

impl Batch {
    /// A batch from dense host counts `x` (n x g) and one-hots.
    pub fn new(
        x: Vec<f32>,
        n: usize,
        g: usize,
        inv: Option<Vec<f32>>,
        spur: Option<Vec<f32>>,
        dev: &Device,
    ) -> candle_core::Result<Batch> {
        let (wi, ws) = (
            inv.as_ref().map_or(0, |v| v.len() / n.max(1)),
            spur.as_ref().map_or(0, |v| v.len() / n.max(1)),
        );
        let width = g + wi + ws;
        // One pass over the counts: the encoder's input is log(x + 1), 0 at a zero count,
        // so only the non-zero entries are written.
        let mut enc = vec![0f32; n * width];
        let mut lg = 0f64;
        let mut lib = vec![0f32; n];
        let (mut nz_values, mut nz_genes) = (Vec::new(), Vec::new());
        for i in 0..n {
            let row = &x[i * g..(i + 1) * g];
            let out = &mut enc[i * width..(i + 1) * width];
            let mut total = 0f64;
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    nz_values.push(v);
                    nz_genes.push(j as u32);
                    out[j] = (v + 1.0).ln();
                    total += v as f64;
                    if v > 1.0 {
                        lg += ln_factorial(v);
                    }
                }
            }
            lib[i] = total as f32;
            let mut at = g;
            for (u, w) in [(&inv, wi), (&spur, ws)] {
                if let Some(u) = u {
                    out[at..at + w].copy_from_slice(&u[i * w..(i + 1) * w]);
                    at += w;
                }
            }
        }
        let nnz = nz_values.len();
        let oh = |v: Option<Vec<f32>>| -> candle_core::Result<Option<Tensor>> {
            v.map(|v| {
                let w = v.len() / n.max(1);
                Tensor::from_vec(v, (n, w), dev)
            })
            .transpose()
        };
        Ok(Batch {
            x: Tensor::from_vec(x, (n, g), dev)?,
            encoder_input: Tensor::from_vec(enc, (n, width), dev)?,
            inv: oh(inv)?,
            spur: oh(spur)?,
            lgamma_x1: lg,
            library: Tensor::from_vec(lib, (n, 1), dev)?,
            nz_values: Tensor::from_vec(nz_values, nnz, dev)?,
            nz_genes: Tensor::from_vec(nz_genes, nnz, dev)?,
        })
    }
    /// Cells in the batch.
    pub fn n(&self) -> usize {
        self.x.dims()[0]
    }
}

/// Counts below this have their `log(x!)` in a table.
const LN_FACTORIAL_TABLE: usize = 4096;

/// `log(x!) = log Gamma(x + 1)` of a count (from a table below [`LN_FACTORIAL_TABLE`]: the
/// same values as [`ln_gamma`], computed once).
fn ln_factorial(x: f32) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let k = x as usize;
    if k as f32 == x && k < LN_FACTORIAL_TABLE {
        let t = TABLE.get_or_init(|| {
            (0..LN_FACTORIAL_TABLE)
                .map(|k| ln_gamma(k as f64 + 1.0))
                .collect()
        });
        t[k]
    } else {
        ln_gamma(x as f64 + 1.0)
    }
}

/// `log Gamma(z)` of a tensor with `z > 0`, from candle ops (differentiable):
/// `lgamma(z) = stirling(z + 6) - log(z (z+1) (z+2)) - log((z+3) (z+4) (z+5))`.
pub fn lgamma(z: &Tensor) -> candle_core::Result<Tensor> {
    let p1 = z.mul(&(z + 1.0)?)?.mul(&(z + 2.0)?)?;
    let p2 = (z + 3.0)?.mul(&(z + 4.0)?)?.mul(&(z + 5.0)?)?;
    let w = (z + 6.0)?;
    let lw = w.log()?;
    let inv = w.recip()?;
    let inv2 = inv.sqr()?;
    // 1/12 - inv2 (1/360 - inv2 / 1260)
    let series = inv.mul(
        &(inv2
            .mul(&(inv2.affine(-1.0 / 1260.0, 1.0 / 360.0))?)?
            .affine(-1.0, 1.0 / 12.0))?,
    )?;
    let stirling = ((w.affine(1.0, -0.5)?.mul(&lw)? - &w)? + series)?.affine(1.0, 0.5 * LOG_2PI)?;
    stirling - p1.log()? - p2.log()?
}

/// Uniform in `[-a, a)`.
fn uniform(rng: &mut Rng, n: usize, a: f64) -> Vec<f32> {
    (0..n)
        .map(|_| ((rng.f64() * 2.0 - 1.0) * a) as f32)
        .collect()
}

impl Net {
    /// New weights: Xavier-uniform linear weights (the reference's `weights_init`), torch's
    /// default uniform biases, BN at identity, `theta_raw ~ N(0, 1)`.
    pub fn init(shape: &Shape, rng: &mut Rng, dev: &Device) -> candle_core::Result<Net> {
        let mut t: Vec<(String, Tensor)> = Vec::new();
        let mut buffers = HashMap::new();
        let mut linear = |t: &mut Vec<(String, Tensor)>, name: &str, i: usize, o: usize| {
            let a = (6.0 / (i + o) as f64).sqrt();
            let w = Tensor::from_vec(uniform(rng, i * o, a), (o, i), dev)?;
            let b = Tensor::from_vec(uniform(rng, o, 1.0 / (i as f64).sqrt()), o, dev)?;
            t.push((format!("{name}.weight"), w));
            t.push((format!("{name}.bias"), b));
            candle_core::Result::Ok(())
        };
        for (name, i, o, _) in shape.blocks() {
            linear(&mut t, &name, i, o)?;
            t.push((
                format!("{name}.bn.weight"),
                Tensor::ones(o, DType::F32, dev)?,
            ));
            t.push((
                format!("{name}.bn.bias"),
                Tensor::zeros(o, DType::F32, dev)?,
            ));
            buffers.insert(
                format!("{name}.bn.running_mean"),
                Tensor::zeros(o, DType::F32, dev)?,
            );
            buffers.insert(
                format!("{name}.bn.running_var"),
                Tensor::ones(o, DType::F32, dev)?,
            );
        }
        for (name, i, o) in shape.heads() {
            linear(&mut t, &name, i, o)?;
        }
        let theta: Vec<f32> = (0..shape.n_genes).map(|_| gauss(rng)).collect();
        t.push((
            "theta_raw".into(),
            Tensor::from_vec(theta, shape.n_genes, dev)?,
        ));
        let mut all: HashMap<String, Tensor> = t.into_iter().collect();
        all.extend(buffers);
        Net::from_tensors(shape, &all, dev)
    }

    /// Parameter names in the optimiser's order.
    pub fn param_names(shape: &Shape) -> Vec<String> {
        let mut n = Vec::new();
        for (name, _, _, _) in shape.blocks() {
            for s in ["weight", "bias", "bn.weight", "bn.bias"] {
                n.push(format!("{name}.{s}"));
            }
        }
        for (name, _, _) in shape.heads() {
            n.push(format!("{name}.weight"));
            n.push(format!("{name}.bias"));
        }
        n.push("theta_raw".into());
        n
    }

    /// The network from named tensors (as [`Net::tensors`] writes them), copied onto `dev`.
    pub fn from_tensors(
        shape: &Shape,
        t: &HashMap<String, Tensor>,
        dev: &Device,
    ) -> candle_core::Result<Net> {
        let get = |n: &str| -> candle_core::Result<Tensor> {
            t.get(n)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {n}")))?
                .to_dtype(DType::F32)?
                .to_device(dev)?
                .copy()
        };
        let mut params = Vec::new();
        let mut expect: HashMap<String, Vec<usize>> = HashMap::new();
        for (name, i, o, _) in shape.blocks() {
            expect.insert(format!("{name}.weight"), vec![o, i]);
            for s in ["bias", "bn.weight", "bn.bias"] {
                expect.insert(format!("{name}.{s}"), vec![o]);
            }
        }
        for (name, i, o) in shape.heads() {
            expect.insert(format!("{name}.weight"), vec![o, i]);
            expect.insert(format!("{name}.bias"), vec![o]);
        }
        expect.insert("theta_raw".into(), vec![shape.n_genes]);
        for n in Net::param_names(shape) {
            let v = get(&n)?;
            if v.dims() != expect[&n].as_slice() {
                return Err(candle_core::Error::Msg(format!(
                    "tensor {n} has shape {:?}, expected {:?}",
                    v.dims(),
                    expect[&n]
                )));
            }
            params.push((n, Var::from_tensor(&v)?));
        }
        let mut buffers = HashMap::new();
        for (name, _, o, _) in shape.blocks() {
            for s in ["running_mean", "running_var"] {
                let n = format!("{name}.bn.{s}");
                let v = get(&n)?;
                if v.dims() != [o] {
                    return Err(candle_core::Error::Msg(format!("tensor {n}: wrong shape")));
                }
                buffers.insert(n, v);
            }
        }
        let index = params
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        Ok(Net {
            shape: shape.clone(),
            params,
            index,
            buffers,
        })
    }

    /// Every parameter and buffer by name, on the CPU.
    pub fn tensors(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (n, v) in &self.params {
            out.insert(n.clone(), v.as_tensor().to_device(&Device::Cpu)?);
        }
        for (n, t) in &self.buffers {
            out.insert(n.clone(), t.to_device(&Device::Cpu)?);
        }
        Ok(out)
    }

    /// The trainable variables in the optimiser's order.
    pub fn vars(&self) -> Vec<Var> {
        self.params.iter().map(|(_, v)| v.clone()).collect()
    }

    fn p(&self, name: &str) -> &Tensor {
        self.params[self.index[name]].1.as_tensor()
    }

    fn linear(&self, name: &str, x: &Tensor) -> candle_core::Result<Tensor> {
        let w = self.p(&format!("{name}.weight"));
        let b = self.p(&format!("{name}.bias"));
        super::linear::matmul_wt(x, w)?.broadcast_add(b)
    }

    /// Linear, BN, optional ReLU, dropout. In training, returns the block's batch mean and
    /// unbiased variance for the running statistics.
    fn block(
        &self,
        name: &str,
        relu: bool,
        x: &Tensor,
        mask: Option<&Tensor>,
        train: bool,
        stats: &mut Vec<(String, Tensor, Tensor)>,
    ) -> candle_core::Result<Tensor> {
        let h = self.linear(name, x)?;
        let (mean, var) = if train {
            let n = h.dims()[0] as f64;
            let mean = h.mean_keepdim(0)?;
            let centered = h.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim(0)?;
            let unbiased = (var.detach() * (n / (n - 1.0).max(1.0)))?;
            stats.push((
                name.to_string(),
                mean.detach().squeeze(0)?,
                unbiased.squeeze(0)?,
            ));
            (mean, var)
        } else {
            let rm = &self.buffers[&format!("{name}.bn.running_mean")];
            let rv = &self.buffers[&format!("{name}.bn.running_var")];
            (rm.unsqueeze(0)?, rv.unsqueeze(0)?)
        };
        let gamma = self.p(&format!("{name}.bn.weight"));
        let beta = self.p(&format!("{name}.bn.bias"));
        let norm = h
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
        let mut y = norm.broadcast_mul(gamma)?.broadcast_add(beta)?;
        if relu {
            y = y.relu()?;
        }
        if let Some(m) = mask {
            y = y.mul(m)?;
        }
        Ok(y)
    }

    /// Update the running statistics from a training forward's batch statistics.
    pub fn update_running(
        &mut self,
        stats: Vec<(String, Tensor, Tensor)>,
    ) -> candle_core::Result<()> {
        for (name, mean, var) in stats {
            for (s, v) in [("running_mean", mean), ("running_var", var)] {
                let key = format!("{name}.bn.{s}");
                let old = &self.buffers[&key];
                let new = ((old * (1.0 - BN_MOMENTUM))? + (v * BN_MOMENTUM)?)?;
                self.buffers.insert(key, new);
            }
        }
        Ok(())
    }

    /// Encoder: posterior mean `g` and variance `v` of `z` (cells x latent).
    fn encode(
        &self,
        b: &Batch,
        masks: &mut dyn FnMut(&str) -> Option<Tensor>,
        train: bool,
        stats: &mut Vec<(String, Tensor, Tensor)>,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let mut h = b.encoder_input.clone();
        for l in 0..self.shape.encoder_layers {
            let name = format!("encoder.{l}");
            h = self.block(&name, true, &h, masks(&name).as_ref(), train, stats)?;
        }
        let g = self.linear("mean", &h)?;
        let v = (self.linear("logvar", &h)?.exp()? + VAR_EPS)?;
        Ok((g, v))
    }

    /// A prior's mean (`None`: 0) and variance (`None`: 1) given its one-hots (cells x d);
    /// both `None` without covariates.
    fn prior(
        &self,
        which: &str,
        u: Option<&Tensor>,
        masks: &mut dyn FnMut(&str) -> Option<Tensor>,
        train: bool,
        stats: &mut Vec<(String, Tensor, Tensor)>,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let Some(u) = u else { return Ok((None, None)) };
        let n0 = format!("{which}.0");
        let h = self.block(&n0, true, u, masks(&n0).as_ref(), train, stats)?;
        if self.shape.learned_prior_mean {
            let mean = self.linear(&format!("{which}.mean"), &h)?;
            let logl = self.linear(&format!("{which}.logl"), &h)?;
            return Ok((Some(mean), Some((logl.exp()? + VAR_EPS)?)));
        }
        let n1 = format!("{which}.1");
        let h = self.block(&n1, false, &h, masks(&n1).as_ref(), train, stats)?;
        Ok((None, Some((h.exp()? + VAR_EPS)?)))
    }

    /// Decoder: the logits of the NB means' gene frequencies (cells x genes) of latent `z`
    /// (and, with `inject_spur`, the spurious one-hots); the mean is their softmax times the
    /// library size.
    fn decode(
        &self,
        z: &Tensor,
        b: &Batch,
        masks: &mut dyn FnMut(&str) -> Option<Tensor>,
        train: bool,
        stats: &mut Vec<(String, Tensor, Tensor)>,
    ) -> candle_core::Result<Tensor> {
        let input = match (&b.spur, self.shape.inject_spur) {
            (Some(u), true) => Tensor::cat(&[z, u], 1)?,
            _ => z.clone(),
        };
        let h = self.block(
            "decoder.0",
            true,
            &input,
            masks("decoder.0").as_ref(),
            train,
            stats,
        )?;
        let h = self.block(
            "decoder.1",
            false,
            &h,
            masks("decoder.1").as_ref(),
            train,
            stats,
        )?;
        self.linear("freq", &h)
    }

    /// The training loss of a minibatch (mean negative ELBO over its cells, with prior
    /// weight `beta`), its parts, and the batch statistics for the running averages.
    pub fn loss(&self, b: &Batch, noise: &Noise, beta: f64) -> candle_core::Result<Loss> {
        let names: Vec<String> = self.shape.blocks().into_iter().map(|x| x.0).collect();
        let mut masks = |name: &str| -> Option<Tensor> {
            let m = noise.masks.as_ref()?;
            let i = names.iter().position(|n| n == name)?;
            Some(m[i].clone())
        };
        let mut stats = Vec::new();
        let (mean_inv, var_inv) =
            self.prior("prior_inv", b.inv.as_ref(), &mut masks, true, &mut stats)?;
        let spur_prior = b.spur.as_ref().filter(|_| !self.shape.inject_spur);
        let (mean_spur, var_spur) =
            self.prior("prior_spur", spur_prior, &mut masks, true, &mut stats)?;
        let (g, v) = self.encode(b, &mut masks, true, &mut stats)?;
        let z = (&g + noise.eps.mul(&v.sqrt()?)?)?;
        let logits = self.decode(&z, b, &mut masks, true, &mut stats)?;
        let n = b.n() as f64;
        // Mean over the cells of log NB(x); the loss needs only the batch mean.
        let log_px = ((self.log_nb_sum(b, &logits)? - b.lgamma_x1)? / n)?;
        let di = self.shape.latent_inv;
        let ds = self.shape.latent_spur;
        let lq = log_normal(&z, &g, Some(&v))?;
        let mean_inv = mean_inv.map_or_else(|| zeros_like(di, &z), Ok)?;
        let lp_inv = log_normal(&z.narrow(1, 0, di)?, &mean_inv, var_inv.as_ref())?;
        let lp = if ds == 0 {
            lp_inv
        } else {
            let zs = z.narrow(1, di, ds)?;
            let mean_spur = mean_spur.map_or_else(|| zeros_like(ds, &z), Ok)?;
            (lp_inv + log_normal(&zs, &mean_spur, var_spur.as_ref())?)?
        };
        let kl_part = (lp - lq)?.mean_all()?;
        let loss = (&log_px + (&kl_part * beta)?)?.neg()?;
        Ok(Loss {
            loss,
            recon: log_px.neg()?.detach(),
            kl: kl_part.neg()?.detach(),
            stats,
        })
    }

    /// `sum over cells and genes of [log NB(x | mu, theta) + lgamma(x + 1)]` (the constant is
    /// subtracted by the caller): the dense terms, plus `lgamma(x + theta) - lgamma(theta)` at
    /// the non-zero counts only.
    fn log_nb_sum(&self, b: &Batch, logits: &Tensor) -> candle_core::Result<Tensor> {
        let theta_raw = self.p("theta_raw");
        let counts = super::nb::Counts {
            x: &b.x,
            library: &b.library,
            nz_values: &b.nz_values,
            nz_genes: &b.nz_genes,
        };
        if let Some(sum) = super::nb::fused_sum(logits, theta_raw, &counts)? {
            return Ok(sum);
        }
        let dense = super::nb::dense_sum_ops(logits, theta_raw, &b.x, &b.library)?;
        if b.nz_values.dims()[0] == 0 {
            return Ok(dense);
        }
        let th = theta_raw.exp()?.index_select(&b.nz_genes, 0)?;
        let lg = (lgamma(&(&b.nz_values + &th)?)? - lgamma(&th)?)?.sum_all()?;
        dense + lg
    }

    /// Evaluation-mode posterior means (cells x latent) of a batch.
    pub fn posterior_mean(&self, b: &Batch) -> candle_core::Result<Tensor> {
        let mut none = |_: &str| None;
        let mut stats = Vec::new();
        Ok(self.encode(b, &mut none, false, &mut stats)?.0)
    }
}

fn zeros_like(d: usize, z: &Tensor) -> candle_core::Result<Tensor> {
    Tensor::zeros((z.dims()[0], d), DType::F32, z.device())
}

/// `sum_d log N(z | mu, v)` per row; `v = None` means variance 1.
fn log_normal(z: &Tensor, mu: &Tensor, v: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let d2 = (z - mu)?.sqr()?;
    let inner = match v {
        Some(v) => (v.log()? + d2.div(v)?)?,
        None => d2,
    };
    (inner + LOG_2PI)?.sum(1)? * -0.5
}

/// A training loss and its parts (detached, for the log).
pub struct Loss {
    /// The scalar to minimise: the mean negative ELBO with prior weight beta.
    pub loss: Tensor,
    /// Mean negative log-likelihood of the counts.
    pub recon: Tensor,
    /// Mean of `-(log p(z_inv) + log p(z_spur) - log q(z))` (a one-sample KL estimate).
    pub kl: Tensor,
    /// Batch statistics for the BN running averages.
    pub stats: Vec<(String, Tensor, Tensor)>,
}

impl crate::engine::state::Network for Net {
    fn named(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        self.tensors()
    }
    fn vars(&self) -> Vec<Var> {
        Self::vars(self)
    }
}
