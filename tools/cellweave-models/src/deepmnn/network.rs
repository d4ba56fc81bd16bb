//! deepMNN's network and loss in candle ops (autograd; any device).
//!
//! Residual blocks on the gene space: `x + PReLU(BN(Linear(2d, d)(PReLU(BN(Linear(d, 2d)(x))))))`
//! (deepMNN's `ResnetBlock`, two of them). BatchNorm as torch's `BatchNorm1d` (eps 1e-5,
//! batch statistics with the biased variance in training, running statistics with momentum
//! 0.1 and the unbiased variance in evaluation); PReLU with one slope per layer, 0.25 at
//! the start; linear layers initialised as torch's `nn.Linear` (uniform in
//! `+-1/sqrt(fan_in)`).
//!
//! Loss of a minibatch of `m` pairs, rows `0..m` the first cells and `m..2m` their
//! partners (`x` on the scaled gene scale):
//! `alpha x sum_pairs mean_k |h(f(x_a)) - h(f(x_b))| + beta x sum_cells mean_g |f(x) - x|`
//! with `h` the pair space ([`PairSpace`]): deepMNN's projection on the `g x k` principal
//! axes `P` (`h(y) = y P`, alpha = 1, beta = 0.001: deepMNN's `training_step` with its
//! defaults, no gene-space pair term), or the batch-corrected scETM's frozen encoder
//! (`h(y) = ReLU(y W^T + b)`, alpha = 0.1, beta = 0.99; [`super::autoencoder`]).

use candle_core::{DType, Device, Tensor, Var, D};
use std::collections::HashMap;

use super::autoencoder::Autoencoder;
use crate::engine::checkpoint::named_tensor;
use crate::engine::state::Tensors;
use crate::nn::{torch_uniform, BN_EPS};
use crate::rng::Rng;

/// PReLU's initial slope (torch's default).
pub const PRELU_INIT: f32 = 0.25;

/// The shapes of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    /// Genes (the width of the input and the output).
    pub n_genes: usize,
    /// Residual blocks.
    pub blocks: usize,
    /// Units of the frozen autoencoder of the pair term (0: none, the pair term projects
    /// on principal axes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pair_code: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Where the pair term compares the two corrected cells of a pair.
pub enum PairSpace {
    /// deepMNN: their projections on the principal axes `P` (`g x k`).
    Axes(Tensor),
    /// The batch-corrected scETM: the codes of a frozen encoder, `ReLU(y W^T + b)` with
    /// `w_t` = `W^T` (`g x c`), read on the scaled values.
    Codes {
        /// `W^T`, `g x c`.
        w_t: Tensor,
        /// `b`, `c`.
        b: Tensor,
    },
}

impl PairSpace {
    /// The rows `y` (`n x g`) in the pair space.
    pub fn map(&self, y: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            PairSpace::Axes(p) => y.matmul(p),
            PairSpace::Codes { w_t, b } => y.matmul(w_t)?.broadcast_add(b)?.relu(),
        }
    }
}

/// Variables of one block, in order (torch's names under `model.{b}.block.`).
const PER_BLOCK: [(&str, Part); 10] = [
    ("0.weight", Part::W1),
    ("0.bias", Part::B1),
    ("1.weight", Part::Ones1),
    ("1.bias", Part::Zeros1),
    ("2.weight", Part::Slope),
    ("3.weight", Part::W2),
    ("3.bias", Part::B2),
    ("4.weight", Part::Ones2),
    ("4.bias", Part::Zeros2),
    ("5.weight", Part::Slope),
];

#[derive(Clone, Copy)]
enum Part {
    W1,
    B1,
    Ones1,
    Zeros1,
    Slope,
    W2,
    B2,
    Ones2,
    Zeros2,
}

impl Part {
    fn dims(self, d: usize) -> Vec<usize> {
        match self {
            Part::W1 => vec![2 * d, d],
            Part::B1 | Part::Ones1 | Part::Zeros1 => vec![2 * d],
            Part::Slope => vec![1],
            Part::W2 => vec![d, 2 * d],
            Part::B2 | Part::Ones2 | Part::Zeros2 => vec![d],
        }
    }
}

/// The network: trainable variables (10 per block, [`PER_BLOCK`] order), the running
/// statistics of its BatchNorms (2 per block: mean and variance of each) and, for the
/// autoencoder pair space, the frozen autoencoder (saved with the network, never trained
/// with it).
pub struct Network {
    /// The network's shape.
    pub shape: Shape,
    /// Trainable variables, in [`PER_BLOCK`] order block by block.
    pub vars: Vec<Var>,
    /// Per BatchNorm (block-major): running mean and running variance.
    pub running: Vec<(Tensor, Tensor)>,
    /// The frozen autoencoder of the pair term (`shape.pair_code` units), if any.
    pub autoencoder: Option<Autoencoder>,
}

/// A forward pass: the output and, in training mode, each BatchNorm's batch mean and
/// biased variance (detached), for the running statistics.
pub struct Forward {
    /// The corrected values (`n x g`).
    pub out: Tensor,
    /// Each BatchNorm's batch mean and biased variance (training mode; empty otherwise).
    pub stats: Vec<(Tensor, Tensor)>,
}

/// A minibatch's loss and its two terms.
pub struct Loss {
    /// The minibatch's loss (pair term + beta x identity term).
    pub loss: Tensor,
    /// The pair term.
    pub pair: Tensor,
    /// The identity term.
    pub identity: Tensor,
    /// Each BatchNorm's batch mean and biased variance.
    pub stats: Vec<(Tensor, Tensor)>,
}

fn prelu(x: &Tensor, a: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? - x.neg()?.relu()?.broadcast_mul(a)?
}

impl Network {
    /// New weights drawn from `rng` as torch initialises them (and no autoencoder: a
    /// pre-trained one is set afterwards).
    pub fn init(shape: Shape, rng: &mut Rng, device: &Device) -> candle_core::Result<Self> {
        let d = shape.n_genes;
        let mut vars = Vec::new();
        for _ in 0..shape.blocks {
            for (_, part) in PER_BLOCK {
                let dims = part.dims(d);
                let n: usize = dims.iter().product();
                let uniform = |fan_in: usize, rng: &mut Rng| torch_uniform(rng, n, fan_in);
                let v = match part {
                    Part::W1 | Part::B1 => uniform(d, rng),
                    Part::W2 | Part::B2 => uniform(2 * d, rng),
                    Part::Ones1 | Part::Ones2 => vec![1.0; n],
                    Part::Zeros1 | Part::Zeros2 => vec![0.0; n],
                    Part::Slope => vec![PRELU_INIT; n],
                };
                vars.push(Var::from_tensor(&Tensor::from_vec(v, dims, device)?)?);
            }
        }
        let running = Self::fresh_running(shape, device)?;
        Ok(Network {
            shape,
            vars,
            running,
            autoencoder: None,
        })
    }

    fn fresh_running(shape: Shape, device: &Device) -> candle_core::Result<Vec<(Tensor, Tensor)>> {
        let d = shape.n_genes;
        let mut r = Vec::new();
        for _ in 0..shape.blocks {
            for w in [2 * d, d] {
                r.push((
                    Tensor::zeros(w, DType::F32, device)?,
                    Tensor::ones(w, DType::F32, device)?,
                ));
            }
        }
        Ok(r)
    }

    fn names(shape: Shape) -> Vec<String> {
        (0..shape.blocks)
            .flat_map(|b| {
                PER_BLOCK
                    .iter()
                    .map(move |(n, _)| format!("model.{b}.block.{n}"))
            })
            .collect()
    }

    fn running_names(b: usize, which: usize) -> (String, String) {
        let layer = if which == 0 { 1 } else { 4 };
        (
            format!("model.{b}.block.{layer}.running_mean"),
            format!("model.{b}.block.{layer}.running_var"),
        )
    }

    /// The weights by name (with the running statistics), on the CPU.
    pub fn named(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (name, v) in Self::names(self.shape).into_iter().zip(&self.vars) {
            out.insert(name, v.as_tensor().to_device(&Device::Cpu)?);
        }
        for (i, (m, v)) in self.running.iter().enumerate() {
            let (nm, nv) = Self::running_names(i / 2, i % 2);
            out.insert(nm, m.to_device(&Device::Cpu)?);
            out.insert(nv, v.to_device(&Device::Cpu)?);
        }
        if let Some(ae) = &self.autoencoder {
            out.extend(ae.named()?);
        }
        Ok(out)
    }

    /// Rebuild from [`Network::named`]'s tensors, checking every shape against `shape`.
    pub fn from_named(t: &Tensors, shape: Shape, device: &Device) -> candle_core::Result<Self> {
        let get = |name: &str, dims: &[usize]| named_tensor(t, name, dims, true)?.to_device(device);
        let d = shape.n_genes;
        let mut vars = Vec::new();
        let names = Self::names(shape);
        for (i, name) in names.iter().enumerate() {
            let dims = PER_BLOCK[i % PER_BLOCK.len()].1.dims(d);
            vars.push(Var::from_tensor(&get(name, &dims)?)?);
        }
        let mut running = Vec::new();
        for i in 0..2 * shape.blocks {
            let w = if i % 2 == 0 { 2 * d } else { d };
            let (nm, nv) = Self::running_names(i / 2, i % 2);
            running.push((get(&nm, &[w])?, get(&nv, &[w])?));
        }
        let autoencoder = match shape.pair_code {
            0 => None,
            c => Some(Autoencoder::from_named(t, d, c, device)?),
        };
        Ok(Network {
            shape,
            vars,
            running,
            autoencoder,
        })
    }

    fn v(&self, block: usize, i: usize) -> &Tensor {
        self.vars[block * PER_BLOCK.len() + i].as_tensor()
    }

    /// The corrected values of `x` (`n x g`); `train`: BatchNorm on the batch statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Forward> {
        let mut h = x.clone();
        let mut stats = Vec::new();
        for b in 0..self.shape.blocks {
            let mut y = h.clone();
            for (layer, base) in [(0usize, 0usize), (1, 5)] {
                let lin = y
                    .matmul(&self.v(b, base).t()?)?
                    .broadcast_add(self.v(b, base + 1))?;
                let (mean, var) = if train {
                    let mean = lin.mean_keepdim(0)?;
                    let var = lin.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
                    stats.push((mean.detach().squeeze(0)?, var.detach().squeeze(0)?));
                    (mean, var)
                } else {
                    let (m, v) = &self.running[2 * b + layer];
                    (m.unsqueeze(0)?, v.unsqueeze(0)?)
                };
                let norm = lin
                    .broadcast_sub(&mean)?
                    .broadcast_div(&(var + BN_EPS)?.sqrt()?)?
                    .broadcast_mul(self.v(b, base + 2))?
                    .broadcast_add(self.v(b, base + 3))?;
                y = prelu(&norm, self.v(b, base + 4))?;
            }
            h = (h + y)?;
        }
        Ok(Forward { out: h, stats })
    }

    /// The training loss of `m` pairs: `x` holds the first cells in rows `0..m` and their
    /// partners in rows `m..2m`; the pair term compares them in `space`, weighted by
    /// `alpha`, the identity term by `beta`.
    pub fn loss(
        &self,
        x: &Tensor,
        space: &PairSpace,
        alpha: f64,
        beta: f64,
    ) -> candle_core::Result<Loss> {
        let m = x.dim(0)? / 2;
        let f = self.forward(x, true)?;
        let h = space.map(&f.out)?;
        let diff = (h.narrow(0, 0, m)? - h.narrow(0, m, m)?)?;
        let pair = diff.abs()?.mean(D::Minus1)?.sum_all()?;
        let identity = (&f.out - x)?.abs()?.mean(D::Minus1)?.sum_all()?;
        let loss = ((&pair * alpha)? + (&identity * beta)?)?;
        Ok(Loss {
            loss,
            pair,
            identity,
            stats: f.stats,
        })
    }

    /// Fold a training pass's batch statistics (`n` rows) into the running ones (torch's
    /// update: momentum 0.1, unbiased variance).
    pub fn update_running(
        &mut self,
        stats: &[(Tensor, Tensor)],
        n: usize,
    ) -> candle_core::Result<()> {
        for ((rm, rv), (m, v)) in self.running.iter_mut().zip(stats) {
            crate::nn::update_running(rm, rv, m, v, n)?;
        }
        Ok(())
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
