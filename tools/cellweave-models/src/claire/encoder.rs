//! CLAIRE's encoder: Linear(G, G/4) ReLU Dropout → Linear(G/4, G/8) ReLU Dropout →
//! Linear(G/8, latent) ReLU → L2 normalisation, with a hand-written backward pass.
//!
//! The forward and backward passes are candle tensor ops (matmuls through candle's gemm),
//! so they run on any candle device; the backward is written out by hand because candle's
//! autograd costs about three times the forward for this network on a CPU. Tests check it
//! against candle's autograd and against finite differences.

use candle_core::{DType, Device, Tensor, Var, D};

use crate::rng::Rng;

/// Layer widths `[G, G/4, G/8, latent]` of the CLAIRE encoder for `G` input genes.
pub fn widths(n_genes: usize, latent: usize) -> [usize; 4] {
    [n_genes, (n_genes / 4).max(1), (n_genes / 8).max(1), latent]
}

/// One fully connected layer, weights stored `[out, in]` as in torch.
#[derive(Clone)]
pub struct Linear {
    /// Weights, `[out, in]`: `y = x w^T + b`.
    pub w: Var,
    /// Bias, `[out]`.
    pub b: Var,
}

/// The three layers of the encoder.
#[derive(Clone)]
pub struct Encoder {
    /// `G -> G/4`, `G/4 -> G/8`, `G/8 -> latent` (see [`widths`]).
    pub layers: [Linear; 3],
}

/// Dropout masks for one training forward pass (entries 0 or `1 / (1 - p)`).
pub struct Masks {
    /// Multipliers of the first hidden layer's output, `[n, G/4]`.
    pub m1: Tensor,
    /// Multipliers of the second hidden layer's output, `[n, G/8]`.
    pub m2: Tensor,
}

/// What the backward pass needs from a training forward pass.
pub struct Trace {
    /// The input, `[n, G]`.
    pub x: Tensor,
    /// First hidden layer after ReLU and dropout, `[n, G/4]`.
    pub h1: Tensor,
    /// Second hidden layer after ReLU and dropout, `[n, G/8]`.
    pub h2: Tensor,
    /// The dropout multipliers applied to `h1`.
    pub m1: Tensor,
    /// The dropout multipliers applied to `h2`.
    pub m2: Tensor,
    /// ReLU output of the last layer (before normalisation).
    pub h3: Tensor,
    /// Row norms of `h3` clamped at 1e-12, shape `[n, 1]`.
    pub norm: Tensor,
    /// 1 where the norm was not clamped, shape `[n, 1]`.
    pub unclamped: Tensor,
    /// The L2-normalised output.
    pub out: Tensor,
}

/// torch.nn.functional.normalize's eps.
const NORM_EPS: f64 = 1e-12;

/// Parameter names in torch's `nn.Sequential` numbering (Linear at 0, 3 and 6).
pub const PARAM_NAMES: [&str; 6] = [
    "0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias",
];

impl Encoder {
    /// torch's `nn.Linear` default initialisation: weights and biases uniform in
    /// `±1/sqrt(fan_in)` (kaiming uniform with a = sqrt(5)).
    pub fn init(
        n_genes: usize,
        latent: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let w = widths(n_genes, latent);
        let mut layer = |fan_in: usize, fan_out: usize| -> candle_core::Result<Linear> {
            let bound = 1.0 / (fan_in as f64).sqrt();
            let mut uni = |n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| ((2.0 * rng.f64() - 1.0) * bound) as f32)
                    .collect()
            };
            let wv = uni(fan_in * fan_out);
            let bv = uni(fan_out);
            Ok(Linear {
                w: Var::from_tensor(&Tensor::from_vec(wv, (fan_out, fan_in), device)?)?,
                b: Var::from_tensor(&Tensor::from_vec(bv, fan_out, device)?)?,
            })
        };
        Ok(Encoder {
            layers: [layer(w[0], w[1])?, layer(w[1], w[2])?, layer(w[2], w[3])?],
        })
    }

    /// A deep copy (new variables with the same values).
    pub fn deep_clone(&self) -> candle_core::Result<Self> {
        let cp = |l: &Linear| -> candle_core::Result<Linear> {
            Ok(Linear {
                w: Var::from_tensor(&l.w.as_tensor().copy()?)?,
                b: Var::from_tensor(&l.b.as_tensor().copy()?)?,
            })
        };
        Ok(Encoder {
            layers: [
                cp(&self.layers[0])?,
                cp(&self.layers[1])?,
                cp(&self.layers[2])?,
            ],
        })
    }

    /// Build from named tensors (`<prefix>0.weight`, ...), checking shapes.
    pub fn from_tensors(
        tensors: &std::collections::HashMap<String, Tensor>,
        prefix: &str,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let get = |name: &str| -> candle_core::Result<Var> {
            let t = tensors
                .get(&format!("{prefix}{name}"))
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {prefix}{name}")))?;
            // `copy`: never share storage with the source (a live model's variables).
            Var::from_tensor(&t.to_dtype(DType::F32)?.to_device(device)?.copy()?)
        };
        let mut vars = PARAM_NAMES
            .iter()
            .map(|n| get(n))
            .collect::<candle_core::Result<Vec<_>>>()?
            .into_iter();
        let mut next = || vars.next().unwrap();
        let layers = [
            Linear {
                w: next(),
                b: next(),
            },
            Linear {
                w: next(),
                b: next(),
            },
            Linear {
                w: next(),
                b: next(),
            },
        ];
        for (i, l) in layers.iter().enumerate() {
            let (o, _) = l.w.dims2()?;
            if l.b.dims1()? != o {
                return Err(candle_core::Error::Msg(format!(
                    "{prefix}: layer {i} bias does not match its weight"
                )));
            }
            if i > 0 && layers[i - 1].w.dims2()?.0 != l.w.dims2()?.1 {
                return Err(candle_core::Error::Msg(format!(
                    "{prefix}: layer {i} input width does not match"
                )));
            }
        }
        Ok(Encoder { layers })
    }

    /// Named tensors for saving.
    pub fn named(&self, prefix: &str) -> Vec<(String, Tensor)> {
        PARAM_NAMES
            .iter()
            .zip(self.vars())
            .map(|(n, v)| (format!("{prefix}{n}"), v.as_tensor().clone()))
            .collect()
    }

    /// The variables in the order `w1, b1, w2, b2, w3, b3` (the order of the gradients).
    pub fn vars(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|l| [l.w.clone(), l.b.clone()])
            .collect()
    }

    /// Input width `G` (genes per cell).
    pub fn n_genes(&self) -> usize {
        self.layers[0].w.dims()[1]
    }
    /// Output (embedding) width.
    pub fn latent(&self) -> usize {
        self.layers[2].w.dims()[0]
    }
    /// The two hidden widths (`G/4`, `G/8` for a fresh encoder).
    pub fn hidden(&self) -> (usize, usize) {
        (self.layers[0].w.dims()[0], self.layers[1].w.dims()[0])
    }
    /// Number of scalar parameters (weights and biases of the three layers).
    pub fn n_params(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    fn linear(x: &Tensor, l: &Linear) -> candle_core::Result<Tensor> {
        x.matmul(&l.w.as_tensor().t()?)?
            .broadcast_add(l.b.as_tensor())
    }

    /// Eval-mode forward (no dropout): the L2-normalised embedding of each row of `x`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h1 = Self::linear(x, &self.layers[0])?.relu()?;
        let h2 = Self::linear(&h1, &self.layers[1])?.relu()?;
        let h3 = Self::linear(&h2, &self.layers[2])?.relu()?;
        l2_normalize(&h3)
    }

    /// Training forward with dropout masks; keeps what [`Encoder::backward`] needs.
    pub fn forward_train(&self, x: &Tensor, masks: &Masks) -> candle_core::Result<Trace> {
        let h1 = Self::linear(x, &self.layers[0])?.relu()?.mul(&masks.m1)?;
        let h2 = Self::linear(&h1, &self.layers[1])?.relu()?.mul(&masks.m2)?;
        let h3 = Self::linear(&h2, &self.layers[2])?.relu()?;
        let raw = h3.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
        let norm = raw.maximum(NORM_EPS)?;
        let unclamped = raw.gt(NORM_EPS)?.to_dtype(h3.dtype())?;
        let out = h3.broadcast_div(&norm)?;
        Ok(Trace {
            x: x.clone(),
            h1,
            h2,
            m1: masks.m1.clone(),
            m2: masks.m2.clone(),
            h3,
            norm,
            unclamped,
            out,
        })
    }

    /// Gradients of a loss with respect to `w1, b1, w2, b2, w3, b3`, given the gradient
    /// `dout` of the loss with respect to the normalised output of `trace`.
    pub fn backward(&self, t: &Trace, dout: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let dtype = dout.dtype();
        // out = h3 / n, n = max(|h3|, eps): dh3 = (dout - out (out . dout) [n unclamped]) / n
        let proj = (&t.out * dout)?.sum_keepdim(D::Minus1)?.mul(&t.unclamped)?;
        let dh3 = (dout - t.out.broadcast_mul(&proj)?)?.broadcast_div(&t.norm)?;
        // ReLU: h3 > 0 exactly where z3 > 0.
        let dz3 = dh3.mul(&t.h3.gt(0.0)?.to_dtype(dtype)?)?;
        let dw3 = dz3.t()?.matmul(&t.h2)?;
        let db3 = dz3.sum(0)?;
        let dh2 = dz3.matmul(self.layers[2].w.as_tensor())?;
        // h2 = relu(z2) * m2: h2 > 0 exactly where z2 > 0 and the unit is kept.
        let dz2 = dh2.mul(&t.m2)?.mul(&t.h2.gt(0.0)?.to_dtype(dtype)?)?;
        let dw2 = dz2.t()?.matmul(&t.h1)?;
        let db2 = dz2.sum(0)?;
        let dh1 = dz2.matmul(self.layers[1].w.as_tensor())?;
        let dz1 = dh1.mul(&t.m1)?.mul(&t.h1.gt(0.0)?.to_dtype(dtype)?)?;
        let dw1 = dz1.t()?.matmul(&t.x)?;
        let db1 = dz1.sum(0)?;
        Ok(vec![dw1, db1, dw2, db2, dw3, db3])
    }
}

/// Row-wise L2 normalisation as torch's `F.normalize(x, dim=1)`.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let n = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(NORM_EPS)?;
    x.broadcast_div(&n)
}

/// Draw dropout masks for `n` rows of an encoder with hidden widths `(h1, h2)`.
pub fn draw_masks(
    n: usize,
    hidden: (usize, usize),
    p: f32,
    rng: &mut Rng,
    device: &Device,
) -> candle_core::Result<Masks> {
    let mut m1 = vec![0f32; n * hidden.0];
    let mut m2 = vec![0f32; n * hidden.1];
    rng.dropout_mask(&mut m1, p);
    rng.dropout_mask(&mut m2, p);
    Ok(Masks {
        m1: Tensor::from_vec(m1, (n, hidden.0), device)?,
        m2: Tensor::from_vec(m2, (n, hidden.1), device)?,
    })
}
