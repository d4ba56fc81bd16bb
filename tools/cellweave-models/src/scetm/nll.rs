//! scETM's reconstruction term from the topic proportions: `S = -sum_i sum_g x_ig
//! log_softmax(theta_i beta + lambda_{b_i})_g` with `beta = alpha rho` (topics x genes), x the
//! library-normalized counts and lambda the per-batch bias when the network has one (the
//! loss's NLL is `S / n`).
//!
//! [`fused`] computes it on the CPU in one candle custom op: the logits `theta beta` (one
//! product), per cell the bias row added, the row maximum, the exponentials
//! (`kernels::exp_fast`, 2 ulp) and the sums (f64, in a fixed order), then the value and
//! `D_ig = dS/dlogit_ig = p_ig s_i - x_ig` (`p = softmax`, `s_i = sum_g x_ig`) in one sweep;
//! from D the gradients of theta (`D beta^T`), beta (`theta^T D`) and lambda (D's rows summed
//! per batch, in cell order), kept for the backward pass. No cells x genes tensor enters the
//! autograd graph, and `x` gets no gradient. The candle-ops formulation ([`ops`]: the product,
//! index-select and add of the bias, max, subtract, exp, sum, log, subtract, multiply, sum,
//! each a cells x genes tensor, with as many again in the backward pass, plus a gradient for
//! `x`) is what other devices run; a test checks that both give the same value and gradients.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Device, Layout, Shape, Storage, Tensor, D};
use rayon::prelude::*;
use std::sync::Mutex;

use crate::kernels::{exp_fast, gemm_on, lanes_max, Op};
use crate::optim::storage_slice;

/// Cells per parallel task; the partial sums are added in task order, so the value and the
/// bias gradient do not depend on the number of threads.
const ROWS_PER_TASK: usize = 16;

/// The batch bias of a minibatch: lambda (batches x genes) and each cell's batch code (u32).
pub type Bias<'a> = Option<(&'a Tensor, &'a Tensor)>;

/// `S` (a scalar) of `theta` (cells x topics), `beta` (topics x genes), the batch bias and `x`
/// (cells x genes, no gradient): the fused CPU op on the CPU, [`ops`] elsewhere.
pub fn nll_sum(
    theta: &Tensor,
    beta: &Tensor,
    bias: Bias,
    x: &Tensor,
) -> candle_core::Result<Tensor> {
    if matches!(theta.device(), Device::Cpu) {
        fused(theta, beta, bias, x)
    } else {
        ops(theta, beta, bias, x)
    }
}

/// log_softmax over the last dimension (candle ops).
pub fn log_softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let z = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    z.broadcast_sub(&z.exp()?.sum_keepdim(D::Minus1)?.log()?)
}

/// `S` in candle ops (any device; autograd through every op).
pub fn ops(theta: &Tensor, beta: &Tensor, bias: Bias, x: &Tensor) -> candle_core::Result<Tensor> {
    let logit = theta.matmul(beta)?;
    let logit = match bias {
        Some((lambda, batch)) => (logit + lambda.index_select(batch, 0)?)?,
        None => logit,
    };
    (log_softmax(&logit)? * x)?.sum_all()?.neg()
}

/// `S` in one fused CPU op (every tensor on the CPU).
pub fn fused(theta: &Tensor, beta: &Tensor, bias: Bias, x: &Tensor) -> candle_core::Result<Tensor> {
    let (n, k) = theta.dims2()?;
    let (k2, g) = beta.dims2()?;
    if k2 != k || x.dims() != [n, g] {
        candle_core::bail!(
            "scetm nll: theta {:?}, beta {:?} and counts {:?} do not fit",
            theta.dims(),
            beta.dims(),
            x.dims()
        );
    }
    let batch = match bias {
        Some((_, b)) => Some(b.to_dtype(candle_core::DType::U32)?.to_vec1::<u32>()?),
        None => None,
    };
    let op = FusedNll {
        x: x.contiguous()?,
        batch,
        grads: Mutex::new(None),
    };
    let (theta, beta) = (theta.contiguous()?, beta.contiguous()?);
    match bias {
        Some((lambda, _)) => theta.apply_op3(&beta, &lambda.contiguous()?, op),
        None => theta.apply_op2(&beta, op),
    }
}

/// The fused op: the counts and batch codes it reads and the gradients its forward pass
/// computes.
struct FusedNll {
    x: Tensor,
    batch: Option<Vec<u32>>,
    /// dS/dtheta (cells x topics), dS/dbeta (topics x genes) and dS/dlambda (batches x
    /// genes, with the bias).
    grads: Mutex<Option<[Vec<f32>; 3]>>,
}

fn lock_error() -> candle_core::Error {
    candle_core::Error::Msg("scetm nll: gradient store poisoned".into())
}

/// `sum_j a_j b_j` (`sum_j a_j` without `b`) in f64, in 8 interleaved partial sums (a fixed
/// order that vectorises).
#[inline(always)]
fn lanes_dot(a: &[f32], b: Option<&[f32]>) -> f64 {
    let mut acc = [0f64; 8];
    let mut rest = 0f64;
    match b {
        Some(b) => {
            let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
            for (&u, &v) in ca.remainder().iter().zip(cb.remainder()) {
                rest += u as f64 * v as f64;
            }
            for (x, y) in ca.zip(cb) {
                for ((s, &u), &v) in acc.iter_mut().zip(x).zip(y) {
                    *s += u as f64 * v as f64;
                }
            }
        }
        None => {
            let ca = a.chunks_exact(8);
            rest = ca.remainder().iter().map(|&u| u as f64).sum();
            for x in ca {
                for (s, &u) in acc.iter_mut().zip(x) {
                    *s += u as f64;
                }
            }
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// One task's share: the value and the bias gradient over its cells.
struct Partial {
    value: f64,
    dbias: Vec<f64>,
}

impl FusedNll {
    /// The value; keeps the gradients. `lambda`: the bias (batches x genes) when there is one.
    fn run(
        &self,
        theta: &[f32],
        beta: &[f32],
        (n, k, g): (usize, usize, usize),
        lambda: &[f32],
    ) -> candle_core::Result<f32> {
        let held = self.x.storage_and_layout();
        let x = match &*held.0 {
            Storage::Cpu(c) => storage_slice::<f32>(c, held.1)?,
            _ => candle_core::bail!("scetm nll: counts are not on the CPU"),
        };
        let batches = lambda.len() / g.max(1);
        if let Some(b) = &self.batch {
            if b.len() != n || b.iter().any(|&c| c as usize >= batches) {
                candle_core::bail!("scetm nll: batch codes do not fit the bias ({batches} rows)");
            }
        }
        let threads = rayon::current_num_threads();
        // The logits, then D in place.
        let mut grad = vec![0f32; n * g];
        gemm_on(
            &mut grad,
            n,
            g,
            Op::n(theta, n, k),
            Op::n(beta, k, g),
            false,
            threads,
        );
        let partials: Vec<Partial> = grad
            .par_chunks_mut(ROWS_PER_TASK * g.max(1))
            .enumerate()
            .map(|(task, out)| {
                let mut part = Partial {
                    value: 0.0,
                    dbias: vec![0.0; lambda.len()],
                };
                for (r, drow) in out.chunks_mut(g).enumerate() {
                    let i = task * ROWS_PER_TASK + r;
                    let xr = &x[i * g..(i + 1) * g];
                    // The row holds the logits: add the bias, then the exponentials.
                    let code = self.batch.as_ref().map(|b| b[i] as usize);
                    if let Some(c) = code {
                        for (d, &l) in drow.iter_mut().zip(&lambda[c * g..(c + 1) * g]) {
                            *d += l;
                        }
                    }
                    let max = lanes_max(drow);
                    let xs = lanes_dot(xr, None);
                    let xz = lanes_dot(xr, Some(drow));
                    for d in drow.iter_mut() {
                        *d = exp_fast(*d - max);
                    }
                    let sum = lanes_dot(drow, None);
                    // -sum_g x_g (z_g - lse) = s lse - sum_g x_g z_g.
                    part.value += xs * (max as f64 + sum.ln()) - xz;
                    let c = (xs / sum) as f32;
                    for (d, &xv) in drow.iter_mut().zip(xr) {
                        *d = *d * c - xv;
                    }
                    if let Some(c) = code {
                        for (a, &d) in part.dbias[c * g..(c + 1) * g].iter_mut().zip(drow.iter()) {
                            *a += d as f64;
                        }
                    }
                }
                part
            })
            .collect();
        let mut value = 0f64;
        let mut dbias = vec![0f64; lambda.len()];
        for part in partials {
            value += part.value;
            for (a, d) in dbias.iter_mut().zip(&part.dbias) {
                *a += d;
            }
        }
        let dbias = dbias.iter().map(|&v| v as f32).collect();
        let mut dtheta = vec![0f32; n * k];
        gemm_on(
            &mut dtheta,
            n,
            k,
            Op::n(&grad, n, g),
            Op::t(beta, k, g),
            false,
            threads,
        );
        let mut dbeta = vec![0f32; k * g];
        gemm_on(
            &mut dbeta,
            k,
            g,
            Op::t(theta, n, k),
            Op::n(&grad, n, g),
            false,
            threads,
        );
        *self.grads.lock().map_err(|_| lock_error())? = Some([dtheta, dbeta, dbias]);
        Ok(value as f32)
    }

    /// The kept gradients of `args` (theta, beta and lambda when there is one) times the
    /// incoming (scalar) gradient.
    fn grads(&self, args: &[&Tensor], grad_res: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let guard = self.grads.lock().map_err(|_| lock_error())?;
        let Some(kept) = guard.as_ref() else {
            candle_core::bail!("scetm nll: backward before forward")
        };
        let scale = grad_res
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?;
        args.iter()
            .zip(kept)
            .map(|(like, d)| {
                let v: Vec<f32> = d.iter().map(|&v| v * scale).collect();
                Tensor::from_vec(v, like.shape(), like.device())
            })
            .collect()
    }
}

impl CustomOp2 for FusedNll {
    fn name(&self) -> &'static str {
        "scetm-nll"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ((n, k), (_, g)) = (l1.shape().dims2()?, l2.shape().dims2()?);
        let v = self.run(
            storage_slice::<f32>(s1, l1)?,
            storage_slice::<f32>(s2, l2)?,
            (n, k, g),
            &[],
        )?;
        Ok((CpuStorage::F32(vec![v]), Shape::from(())))
    }

    fn bwd(
        &self,
        theta: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let mut g = self.grads(&[theta, beta], grad_res)?.into_iter();
        Ok((g.next(), g.next()))
    }
}

impl CustomOp3 for FusedNll {
    fn name(&self) -> &'static str {
        "scetm-nll-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ((n, k), (_, g), (_, g3)) = (
            l1.shape().dims2()?,
            l2.shape().dims2()?,
            l3.shape().dims2()?,
        );
        if g3 != g {
            candle_core::bail!("scetm nll: bias has {g3} genes, beta {g}");
        }
        let v = self.run(
            storage_slice::<f32>(s1, l1)?,
            storage_slice::<f32>(s2, l2)?,
            (n, k, g),
            storage_slice::<f32>(s3, l3)?,
        )?;
        Ok((CpuStorage::F32(vec![v]), Shape::from(())))
    }

    fn bwd(
        &self,
        theta: &Tensor,
        beta: &Tensor,
        lambda: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let mut g = self.grads(&[theta, beta, lambda], grad_res)?.into_iter();
        Ok((g.next(), g.next(), g.next()))
    }
}
