//! scETM's network and loss in candle ops (autograd; any device).
//!
//! Encoder (on counts / library size): Linear(G, H) ReLU BatchNorm Dropout, then two
//! heads: mu and log sigma (clamped to +-10) of the K-dimensional delta. Training draws
//! delta = mu + sigma * eps and theta = softmax(delta); evaluation uses theta =
//! softmax(mu). Decoder: log_softmax(theta (alpha rho) + lambda_s), alpha the topic
//! embedding (K x L), rho the gene embedding (L x G), lambda_s the optional per-batch
//! bias. Loss: the normalized negative log-likelihood `mean_cells(-sum_g x_g/l log p_g)`
//! plus `w_KL x mean_cells KL(N(mu, sigma) || N(0, 1))`. Parameters, initialisation and
//! names follow scETM 0.5.0 (torch's `nn.Linear` default initialisation, standard
//! normal alpha, rho and lambda; BatchNorm weight 1, bias 0, running statistics with
//! momentum 0.1 and the unbiased variance).

use candle_core::{DType, Device, Tensor, Var, D};
use std::collections::HashMap;

use crate::engine::checkpoint::named_tensor;
use crate::engine::state::Tensors;
use crate::invae::linear::matmul_wt;
use crate::nn::{torch_uniform, BN_EPS};
use crate::rng::Rng;

/// Smallest and largest log sigma (scETM's clamp).
pub const LOGSIGMA_BOUND: f64 = 10.0;
/// Gradient norm clip of scETM's training step.
pub const CLIP_NORM: f64 = 50.0;

/// The shapes of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    /// Genes.
    pub n_genes: usize,
    /// Width of the encoder's hidden layer.
    pub hidden: usize,
    /// Topics K.
    pub topics: usize,
    /// Dimensions L of the gene and topic embeddings.
    pub emb_dim: usize,
    /// Rows of the per-batch bias lambda (0: no bias).
    pub bias_batches: usize,
}

impl Shape {
    /// The dimensions of every variable, in [`NAMES`] order (the batch bias only when the
    /// network has one).
    pub fn var_dims(&self) -> Vec<Vec<usize>> {
        let (g, h, k, l) = (self.n_genes, self.hidden, self.topics, self.emb_dim);
        let mut dims = vec![
            vec![h, g],
            vec![h],
            vec![h],
            vec![h],
            vec![k, h],
            vec![k],
            vec![k, h],
            vec![k],
            vec![k, l],
            vec![l, g],
        ];
        if self.bias_batches > 0 {
            dims.push(vec![self.bias_batches, g]);
        }
        dims
    }
}

/// Parameter names (scETM's torch names; `rho` is scETM's `rho_trainable_emb.trainable`),
/// in the order of [`Network::vars`].
pub const NAMES: [&str; 11] = [
    "q_delta.0.weight",
    "q_delta.0.bias",
    "q_delta.2.weight",
    "q_delta.2.bias",
    "mu_q_delta.weight",
    "mu_q_delta.bias",
    "logsigma_q_delta.weight",
    "logsigma_q_delta.bias",
    "alpha",
    "rho",
    "batch_bias",
];
/// Name of the BatchNorm's running mean.
pub const RUNNING_MEAN: &str = "q_delta.2.running_mean";
/// Name of the BatchNorm's running variance.
pub const RUNNING_VAR: &str = "q_delta.2.running_var";

const W1: usize = 0;
const B1: usize = 1;
const BN_W: usize = 2;
const BN_B: usize = 3;
const W_MU: usize = 4;
const B_MU: usize = 5;
const W_LS: usize = 6;
const B_LS: usize = 7;
const ALPHA: usize = 8;
const RHO: usize = 9;
const BIAS: usize = 10;

/// The network: trainable variables (the batch bias last, when present) and the
/// BatchNorm running statistics.
pub struct Network {
    /// The network's shape.
    pub shape: Shape,
    /// Trainable variables, in [`NAMES`] order.
    pub vars: Vec<Var>,
    /// The BatchNorm's running mean.
    pub running_mean: Tensor,
    /// The BatchNorm's running variance.
    pub running_var: Tensor,
}

/// One training minibatch: library-normalized counts, batch codes (when the network has
/// a batch bias), the dropout multipliers of the hidden layer and the reparameterisation
/// noise.
pub struct Minibatch {
    /// Library-normalized counts (`n x g`).
    pub x: Tensor,
    /// Batch codes (`n`), when the network has a batch bias.
    pub batch: Option<Tensor>,
    /// Dropout multipliers of the hidden layer (`n x h`).
    pub mask: Tensor,
    /// Reparameterisation noise (`n x k`).
    pub eps: Tensor,
}

/// A training forward pass: the loss and its parts, and the minibatch's BatchNorm mean
/// and biased variance (detached).
pub struct Forward {
    /// The loss (nll + KL weight x kl).
    pub loss: Tensor,
    /// Mean negative log-likelihood per cell.
    pub nll: Tensor,
    /// Mean KL per cell.
    pub kl: Tensor,
    /// The minibatch's BatchNorm mean.
    pub bn_mean: Tensor,
    /// The minibatch's BatchNorm biased variance.
    pub bn_var: Tensor,
}

fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.matmul(&w.t()?)?.broadcast_add(b)
}

pub use super::nll::log_softmax;

/// softmax over the last dimension.
pub fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let e = x
        .broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?
        .exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

impl Network {
    /// New weights drawn from `rng` as scETM initialises them.
    pub fn init(shape: Shape, rng: &mut Rng, device: &Device) -> candle_core::Result<Self> {
        let Shape {
            n_genes: g,
            hidden: h,
            topics: k,
            emb_dim: l,
            bias_batches: s,
        } = shape;
        let mut uniform = |n: usize, fan_in: usize| torch_uniform(rng, n, fan_in);
        let mut host: Vec<(Vec<f32>, Vec<usize>)> = vec![
            (uniform(h * g, g), vec![h, g]),
            (uniform(h, g), vec![h]),
            (vec![1.0; h], vec![h]),
            (vec![0.0; h], vec![h]),
            (uniform(k * h, h), vec![k, h]),
            (uniform(k, h), vec![k]),
            (uniform(k * h, h), vec![k, h]),
            (uniform(k, h), vec![k]),
        ];
        let mut normal = |n: usize| {
            let mut v = vec![0f32; n];
            rng.fill_normal(&mut v);
            v
        };
        host.push((normal(k * l), vec![k, l]));
        host.push((normal(l * g), vec![l, g]));
        if s > 0 {
            host.push((normal(s * g), vec![s, g]));
        }
        let vars = host
            .into_iter()
            .map(|(v, dims)| Var::from_tensor(&Tensor::from_vec(v, dims, device)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Network {
            shape,
            vars,
            running_mean: Tensor::zeros(h, DType::F32, device)?,
            running_var: Tensor::ones(h, DType::F32, device)?,
        })
    }

    fn t(&self, i: usize) -> &Tensor {
        self.vars[i].as_tensor()
    }

    /// The weights by name (with the running statistics), on the CPU.
    pub fn named(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (name, v) in NAMES.iter().zip(&self.vars) {
            out.insert(name.to_string(), v.as_tensor().to_device(&Device::Cpu)?);
        }
        out.insert(
            RUNNING_MEAN.into(),
            self.running_mean.to_device(&Device::Cpu)?,
        );
        out.insert(
            RUNNING_VAR.into(),
            self.running_var.to_device(&Device::Cpu)?,
        );
        Ok(out)
    }

    /// Rebuild from [`Network::named`]'s tensors, checking every shape against `shape`.
    pub fn from_named(t: &Tensors, shape: Shape, device: &Device) -> candle_core::Result<Self> {
        let h = shape.hidden;
        let get = |name: &str, want: &[usize]| -> candle_core::Result<Tensor> {
            let x = named_tensor(t, name, want, false)?;
            x.to_dtype(DType::F32)?.to_device(device)?.copy()
        };
        let vars = NAMES
            .iter()
            .zip(&shape.var_dims())
            .map(|(n, d)| Var::from_tensor(&get(n, d)?))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Network {
            shape,
            vars,
            running_mean: get(RUNNING_MEAN, &[h])?,
            running_var: get(RUNNING_VAR, &[h])?,
        })
    }

    /// The training forward pass and loss (`kl_weight` x KL).
    pub fn forward_train(&self, mb: &Minibatch, kl_weight: f64) -> candle_core::Result<Forward> {
        // The counts need no gradient: on the CPU the first layer computes only dW1.
        let h = matmul_wt(&mb.x, self.t(W1))?
            .broadcast_add(self.t(B1))?
            .relu()?;
        let bn_mean = h.mean_keepdim(0)?;
        let centred = h.broadcast_sub(&bn_mean)?;
        let bn_var = centred.sqr()?.mean_keepdim(0)?;
        let hn = centred
            .broadcast_div(&(bn_var.clone() + BN_EPS)?.sqrt()?)?
            .broadcast_mul(self.t(BN_W))?
            .broadcast_add(self.t(BN_B))?;
        let hd = (hn * &mb.mask)?;
        let mu = linear(&hd, self.t(W_MU), self.t(B_MU))?;
        let logsigma =
            linear(&hd, self.t(W_LS), self.t(B_LS))?.clamp(-LOGSIGMA_BOUND, LOGSIGMA_BOUND)?;
        let delta = (&mu + (logsigma.exp()? * &mb.eps)?)?;
        let bias = self.bias(mb.batch.as_ref())?;
        let n = mb.x.dim(0)? as f64;
        let s = super::nll::nll_sum(&softmax(&delta)?, &self.beta()?, bias, &mb.x)?;
        let nll = (s * (1.0 / n))?;
        // KL(N(mu, sigma) || N(0, 1)) = -1/2 sum(1 + 2 log sigma - mu^2 - sigma^2)
        let two_ls = (logsigma * 2.0)?;
        let kl_terms = ((two_ls.clone() + 1.0)? - mu.sqr()? - two_ls.exp()?)?;
        let kl = (kl_terms.sum_all()? * (-0.5 / n))?;
        let loss = (&nll + (&kl * kl_weight)?)?;
        Ok(Forward {
            loss,
            nll,
            kl,
            bn_mean: bn_mean.squeeze(0)?.detach(),
            bn_var: bn_var.squeeze(0)?.detach(),
        })
    }

    /// log p (cells x genes) of topic proportions `theta` (with the batch bias of
    /// `batch` when the network has one).
    pub fn decode(&self, theta: &Tensor, batch: Option<&Tensor>) -> candle_core::Result<Tensor> {
        log_softmax(&self.logits(theta, batch)?)
    }

    /// The batch bias and the batch codes of a minibatch (`None` without a bias).
    fn bias<'a>(&'a self, batch: Option<&'a Tensor>) -> candle_core::Result<super::nll::Bias<'a>> {
        if self.shape.bias_batches == 0 {
            return Ok(None);
        }
        let b = batch.ok_or_else(|| {
            candle_core::Error::Msg("the batch bias needs the batch of every cell".into())
        })?;
        Ok(Some((self.t(BIAS), b)))
    }

    /// The decoder's logits `theta (alpha rho) + lambda_s` (cells x genes) of topic
    /// proportions `theta` (with the batch bias of `batch` when the network has one).
    pub fn logits(&self, theta: &Tensor, batch: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let logit = theta.matmul(&self.beta()?)?;
        match self.bias(batch)? {
            Some((lambda, b)) => logit + lambda.index_select(b, 0)?,
            None => Ok(logit),
        }
    }

    /// Evaluation mode: mu of the library-normalized counts `x` (running BatchNorm
    /// statistics, no dropout).
    pub fn encode_mu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = linear(x, self.t(W1), self.t(B1))?.relu()?;
        let hn = h
            .broadcast_sub(&self.running_mean)?
            .broadcast_div(&(&self.running_var + BN_EPS)?.sqrt()?)?
            .broadcast_mul(self.t(BN_W))?
            .broadcast_add(self.t(BN_B))?;
        linear(&hn, self.t(W_MU), self.t(B_MU))
    }

    /// The topic-gene matrix alpha rho (K x G).
    pub fn beta(&self) -> candle_core::Result<Tensor> {
        self.t(ALPHA).matmul(self.t(RHO))
    }

    /// The gene embedding rho (L x G).
    pub fn rho(&self) -> &Tensor {
        self.t(RHO)
    }

    /// Fold a minibatch's BatchNorm statistics (`n` cells) into the running ones, as
    /// torch: momentum 0.1, unbiased variance.
    pub fn update_running(&mut self, f: &Forward, n: usize) -> candle_core::Result<()> {
        crate::nn::update_running(
            &mut self.running_mean,
            &mut self.running_var,
            &f.bn_mean,
            &f.bn_var,
            n,
        )
    }

    /// The gradients of `loss` for every variable, in order, scaled as torch's
    /// `clip_grad_norm_(max_norm = 50)` does; also the norm before clipping.
    pub fn clipped_grads(&self, loss: &Tensor) -> candle_core::Result<(Vec<Tensor>, f64)> {
        let store = loss.backward()?;
        let grads = self
            .vars
            .iter()
            .map(|v| match store.get(v.as_tensor()) {
                Some(g) => Ok(g.clone()),
                None => v.as_tensor().zeros_like(),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut sq = 0f64;
        for g in &grads {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        let norm = sq.sqrt();
        let coef = CLIP_NORM / (norm + 1e-6);
        if coef < 1.0 {
            let scaled = grads
                .iter()
                .map(|g| g * coef)
                .collect::<candle_core::Result<Vec<_>>>()?;
            return Ok((scaled, norm));
        }
        Ok((grads, norm))
    }
}

impl crate::engine::state::Network for Network {
    fn named(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        Self::named(self)
    }
    fn vars(&self) -> Vec<Var> {
        self.vars.clone()
    }
}
