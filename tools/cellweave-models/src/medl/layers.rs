//! MEDL's building blocks in candle ops (autograd on any device): dense layers (also
//! used transposed, for the tied-weight decoders), batch normalization with running
//! statistics, SELU, and the random-effects block
//! `BN(h) * (1 + Z W_gamma) + Z W_beta` with variational Gaussian weights.

use candle_core::{DType, Device, Result, Tensor, Var, D};

use crate::rng::Rng;

/// SELU's constants (Klambauer et al. 2017).
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
/// SELU's scale.
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
/// Batch normalization: Keras' epsilon and running-average momentum (the authors' code is
/// TensorFlow): `running = 0.99 * running + 0.01 * batch`.
pub const BN_EPS: f64 = 1e-3;
/// Weight of the running statistics in their update (Keras' momentum).
pub const BN_MOMENTUM: f64 = 0.99;

/// How a forward pass uses the batch norms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// A training step: the minibatch's statistics, the running ones updated.
    Train,
    /// The minibatch's statistics, the running ones left as they are.
    Frozen,
    /// Evaluation: the running statistics.
    Eval,
}

/// Named variables of a network, in a fixed order (optimiser order, checkpoint names).
pub type Named = Vec<(String, Var)>;

/// `scale * (max(x, 0) + alpha * (exp(min(x, 0)) - 1))`.
pub fn selu(x: &Tensor) -> Result<Tensor> {
    let pos = x.relu()?;
    let neg = x.neg()?.relu()?.neg()?;
    let neg = ((neg.exp()? - 1.0)? * SELU_ALPHA)?;
    (pos + neg)? * SELU_SCALE
}

/// `log(1 + exp(x))`, stable for large `x`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    // max(x, 0) + log(1 + exp(-|x|))
    let pos = x.relu()?;
    let abs = x.abs()?;
    pos + (abs.neg()?.exp()? + 1.0)?.log()?
}

/// Mean cross-entropy of `logits` (`B x K`) against class `targets` (`B`, u32).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = candle_core::Tensor::log_sum_exp(logits, D::Minus1)?;
    let picked = logits.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    (logp - picked)?.mean_all()
}

/// Mean squared error over every element.
pub fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    (a - b)?.sqr()?.mean_all()
}

/// A uniform `(rows, cols)` tensor in `[-limit, limit)` from `rng`.
fn uniform(rows: usize, cols: usize, limit: f32, rng: &mut Rng, dev: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| (2.0 * rng.f32() - 1.0) * limit)
        .collect();
    Tensor::from_vec(v, (rows, cols), dev)
}

/// Standard normal draws (Box-Muller on `rng`), `n` of them.
pub fn normals(n: usize, rng: &mut Rng) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1 = 1.0 - rng.f64(); // (0, 1]
        let u2 = rng.f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// `y = x W^T + b` with `W` of shape `out x in` (Glorot-uniform, bias zero: Keras' defaults).
pub struct Dense {
    /// Weights (`out x in`).
    pub w: Var,
    /// Biases.
    pub b: Var,
}

impl Dense {
    /// A layer `inp -> out` with Glorot-uniform weights from `rng` and zero biases.
    pub fn init(inp: usize, out: usize, rng: &mut Rng, dev: &Device) -> Result<Self> {
        let limit = (6.0 / (inp + out) as f32).sqrt();
        Ok(Dense {
            w: Var::from_tensor(&uniform(out, inp, limit, rng, dev)?)?,
            b: Var::zeros(out, DType::F32, dev)?,
        })
    }
    /// `x W^T + b`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.w.t()?)?.broadcast_add(&self.b)
    }
    /// The transposed map `y = x W + bias` (`out -> in`): a tied-weight decoder layer.
    pub fn forward_tied(&self, x: &Tensor, bias: &Var) -> Result<Tensor> {
        x.matmul(self.w.as_tensor())?.broadcast_add(bias)
    }
    /// Its variables, named `{p}weight` and `{p}bias`.
    pub fn named(&self, p: &str) -> Named {
        vec![
            (format!("{p}weight"), self.w.clone()),
            (format!("{p}bias"), self.b.clone()),
        ]
    }
}

/// Batch normalization over the rows; affine (`gamma`, `beta`) or not. In training mode it
/// normalizes by the minibatch's mean and (biased) variance and, when asked, updates the
/// running statistics that evaluation mode uses.
pub struct BatchNorm {
    /// Scale and shift (`gamma`, `beta`), when affine.
    pub affine: Option<(Var, Var)>,
    /// Running mean (evaluation mode).
    pub running_mean: Tensor,
    /// Running variance (evaluation mode).
    pub running_var: Tensor,
}

impl BatchNorm {
    /// A batch norm of `width` units (scale 1, shift 0, running mean 0, variance 1).
    pub fn new(width: usize, affine: bool, dev: &Device) -> Result<Self> {
        Ok(BatchNorm {
            affine: if affine {
                Some((
                    Var::ones(width, DType::F32, dev)?,
                    Var::zeros(width, DType::F32, dev)?,
                ))
            } else {
                None
            },
            running_mean: Tensor::zeros(width, DType::F32, dev)?,
            running_var: Tensor::ones(width, DType::F32, dev)?,
        })
    }

    /// Normalize `x` (`B x width`) as `pass` says: by the batch statistics (updating the
    /// running ones in a training step), or by the running statistics.
    pub fn forward(&mut self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        let (mean, var) = if pass != Pass::Eval {
            let mean = x.mean_keepdim(0)?;
            let centered = x.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim(0)?;
            if pass == Pass::Train {
                let m = BN_MOMENTUM;
                self.running_mean =
                    ((&self.running_mean * m)? + (mean.detach().squeeze(0)? * (1.0 - m))?)?;
                self.running_var =
                    ((&self.running_var * m)? + (var.detach().squeeze(0)? * (1.0 - m))?)?;
            }
            (mean, var)
        } else {
            (
                self.running_mean.unsqueeze(0)?,
                self.running_var.unsqueeze(0)?,
            )
        };
        let y = x
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
        match &self.affine {
            Some((g, b)) => y.broadcast_mul(g)?.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// Its scale and shift, named `{p}gamma` and `{p}beta` (none when not affine).
    pub fn named(&self, p: &str) -> Named {
        match &self.affine {
            Some((g, b)) => vec![
                (format!("{p}gamma"), g.clone()),
                (format!("{p}beta"), b.clone()),
            ],
            None => Vec::new(),
        }
    }

    /// The running statistics (saved with the weights, not trained by the optimiser).
    pub fn buffers(&self, p: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{p}running_mean"), self.running_mean.clone()),
            (format!("{p}running_var"), self.running_var.clone()),
        ]
    }
}

/// Prior standard deviation of the random-effect weights.
pub const RE_PRIOR_SD: f64 = 0.25;
/// Posterior standard deviation the random-effect weights start from.
pub const RE_INIT_SD: f64 = 1e-2;

/// A Gaussian-posterior weight matrix `W ~ N(mu, softplus(rho)^2)` (`K x width`), prior
/// `N(0, RE_PRIOR_SD^2)` on every element.
pub struct Variational {
    /// Posterior means.
    pub mu: Var,
    /// Posterior standard deviations before the softplus.
    pub rho: Var,
}

impl Variational {
    /// A `k x width` weight matrix with posterior means 0 and standard deviations `RE_INIT_SD`.
    pub fn new(k: usize, width: usize, dev: &Device) -> Result<Self> {
        let rho0 = RE_INIT_SD.exp_m1().ln(); // softplus(rho0) = RE_INIT_SD
        Ok(Variational {
            mu: Var::zeros((k, width), DType::F32, dev)?,
            rho: Var::from_tensor(&(Tensor::ones((k, width), DType::F32, dev)? * rho0)?)?,
        })
    }
    /// Posterior standard deviations, `softplus(rho)`.
    pub fn sd(&self) -> Result<Tensor> {
        softplus(self.rho.as_tensor())
    }
    /// `mu + sd * eps` (a sample), or `mu` when `eps` is `None` (evaluation).
    pub fn weight(&self, eps: Option<&Tensor>) -> Result<Tensor> {
        match eps {
            Some(e) => self.mu.as_tensor() + (self.sd()? * e)?,
            None => Ok(self.mu.as_tensor().clone()),
        }
    }
    /// `KL(q || p)` summed over the elements:
    /// `log(s_p / s) + (s^2 + mu^2) / (2 s_p^2) - 1/2`.
    pub fn kl(&self) -> Result<Tensor> {
        let s = self.sd()?;
        let sp2 = RE_PRIOR_SD * RE_PRIOR_SD;
        let t = ((s.log()?.neg()? + RE_PRIOR_SD.ln())?
            + ((s.sqr()? + self.mu.as_tensor().sqr()?)? / (2.0 * sp2))?)?;
        (t - 0.5)?.sum_all()
    }
    /// Its variables, named `{p}mu` and `{p}rho`.
    pub fn named(&self, p: &str) -> Named {
        vec![
            (format!("{p}mu"), self.mu.clone()),
            (format!("{p}rho"), self.rho.clone()),
        ]
    }
}

/// The random-effects block `BN(h) * (1 + Z W_gamma) + Z W_beta` (`BN` without its own
/// scale and shift: the batch's `Z W` are the scale and shift).
pub struct ReBlock {
    /// The batch norm (without its own scale and shift).
    pub bn: BatchNorm,
    /// The per-batch scale weights.
    pub gamma: Variational,
    /// The per-batch shift weights.
    pub beta: Variational,
}

/// Standard-normal noise for one [`ReBlock`]'s two weight matrices.
pub struct ReNoise {
    /// Noise of the scale weights.
    pub gamma: Tensor,
    /// Noise of the shift weights.
    pub beta: Tensor,
}

impl ReBlock {
    /// A block of `width` units for `k` batches.
    pub fn new(k: usize, width: usize, dev: &Device) -> Result<Self> {
        Ok(ReBlock {
            bn: BatchNorm::new(width, false, dev)?,
            gamma: Variational::new(k, width, dev)?,
            beta: Variational::new(k, width, dev)?,
        })
    }
    /// Its number of units.
    pub fn width(&self) -> usize {
        self.bn.running_mean.dims1().unwrap_or(0)
    }
    /// Draw this block's noise (gamma's `K x width` values, then beta's).
    pub fn noise(&self, rng: &mut Rng, dev: &Device) -> Result<ReNoise> {
        let (k, w) = self.gamma.mu.dims2()?;
        Ok(ReNoise {
            gamma: Tensor::from_vec(normals(k * w, rng), (k, w), dev)?,
            beta: Tensor::from_vec(normals(k * w, rng), (k, w), dev)?,
        })
    }
    /// `h` (`B x width`), `z` the batches' one-hot rows (`B x K`); `noise`: sampled
    /// weights (training), `None`: posterior means.
    pub fn forward(
        &mut self,
        h: &Tensor,
        z: &Tensor,
        noise: Option<&ReNoise>,
        pass: Pass,
    ) -> Result<Tensor> {
        let n = self.bn.forward(h, pass)?;
        let wg = self.gamma.weight(noise.map(|e| &e.gamma))?;
        let wb = self.beta.weight(noise.map(|e| &e.beta))?;
        let scale = (z.matmul(&wg)? + 1.0)?;
        (n * scale)? + z.matmul(&wb)?
    }
    /// KL of its weights' posteriors from their prior.
    pub fn kl(&self) -> Result<Tensor> {
        self.gamma.kl()? + self.beta.kl()?
    }
    /// Its variables, under `{p}w_gamma.` and `{p}w_beta.`.
    pub fn named(&self, p: &str) -> Named {
        let mut v = self.gamma.named(&format!("{p}w_gamma."));
        v.extend(self.beta.named(&format!("{p}w_beta.")));
        v
    }
}
