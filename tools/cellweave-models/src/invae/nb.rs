//! inVAE's negative-binomial log-likelihood (without its constant `-lgamma(x + 1)`), from
//! the decoder's logits: the dense part
//!
//! `sum_ij [x log(mu + eps) - x log(theta + mu + eps) - theta (log(theta + mu + eps) -
//! log(theta + eps))]` with `mu_ij = softmax(logits_i)_j * library_i` and `theta_j =
//! exp(theta_raw_j)`,
//!
//! plus `sum [lgamma(x + theta_j) - lgamma(theta_j)]` over the non-zero counts (the term is 0
//! at a zero count).
//!
//! [`fused_sum`] computes both on the CPU in one candle custom op (the value and the
//! gradients in one sweep over the cells, no cells x genes temporaries; `lgamma` and
//! digamma on the host in f64); [`dense_sum_ops`] is the dense part in candle ops for other
//! devices (the caller adds the sparse part with `net::lgamma`); a test checks that both
//! give the same value and gradients.

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Shape, Storage, Tensor, D};
use rayon::prelude::*;

use crate::optim::storage_slice;
use std::sync::{Mutex, RwLockReadGuard};

/// Added inside the NB logarithms (as the reference).
pub const NB_EPS: f64 = 1e-8;

/// Rows per parallel task; the partial sums are reduced in task order, so the result does
/// not depend on the number of threads.
const ROWS_PER_TASK: usize = 16;

/// The counts of a minibatch as the likelihood reads them.
pub struct Counts<'a> {
    /// Counts (cells x genes).
    pub x: &'a Tensor,
    /// Library sizes (cells x 1).
    pub library: &'a Tensor,
    /// The non-zero counts.
    pub nz_values: &'a Tensor,
    /// The gene of each non-zero count (u32).
    pub nz_genes: &'a Tensor,
}

/// The NB sum (a scalar: dense part plus the `lgamma` terms at the non-zero counts) of
/// `logits` (cells x genes) and `theta_raw` (genes), in one fused pass; CPU only (`None`
/// on another device: use [`dense_sum_ops`] and `net::lgamma`).
pub fn fused_sum(
    logits: &Tensor,
    theta_raw: &Tensor,
    c: &Counts,
) -> candle_core::Result<Option<Tensor>> {
    if !matches!(logits.device(), Device::Cpu) {
        return Ok(None);
    }
    let op = FusedNb {
        x: c.x.contiguous()?,
        library: c.library.contiguous()?,
        nz_values: c.nz_values.contiguous()?,
        nz_genes: c.nz_genes.contiguous()?,
        grads: Mutex::new(None),
    };
    logits.contiguous()?.apply_op2(theta_raw, op).map(Some)
}

/// [`dense_sum`] in candle ops (any device; autograd through every op).
pub fn dense_sum_ops(
    logits: &Tensor,
    theta_raw: &Tensor,
    x: &Tensor,
    library: &Tensor,
) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let e = logits.broadcast_sub(&max)?.exp()?;
    let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
    let mu = p.broadcast_mul(library)?;
    let theta = theta_raw.exp()?.unsqueeze(0)?;
    let log_theta_mu = mu.broadcast_add(&theta)?.affine(1.0, NB_EPS)?.log()?;
    let t1 = log_theta_mu
        .broadcast_sub(&theta.affine(1.0, NB_EPS)?.log()?)?
        .broadcast_mul(&theta)?;
    let t2 = x.mul(&((mu + NB_EPS)?.log()? - &log_theta_mu)?)?;
    (t2 - t1)?.sum_all()
}

/// The fused CPU op; the gradients are computed with the value and kept for `bwd`.
struct FusedNb {
    x: Tensor,
    library: Tensor,
    nz_values: Tensor,
    nz_genes: Tensor,
    /// d(sum)/d(logits) (cells x genes) and d(sum)/d(theta_raw) (genes).
    grads: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

/// The values of a held CPU tensor (its storage guard and layout).
fn cpu_values<'a, T: candle_core::WithDType>(
    held: &'a (RwLockReadGuard<'a, Storage>, &'a Layout),
) -> candle_core::Result<&'a [T]> {
    match &*held.0 {
        Storage::Cpu(c) => storage_slice(c, held.1),
        _ => candle_core::bail!("fused NB: counts are not on the CPU"),
    }
}

/// One task's share: the value and the theta gradient over its rows.
struct Partial {
    value: f64,
    dtheta: Vec<f64>,
}

impl CustomOp2 for FusedNb {
    fn name(&self) -> &'static str {
        "invae-nb"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let logits = storage_slice::<f32>(s1, l1)?;
        let theta_raw = storage_slice::<f32>(s2, l2)?;
        let (n, g) = l1.shape().dims2()?;
        // The counts the op holds, read in place (no copy).
        let held = [&self.x, &self.library, &self.nz_values, &self.nz_genes]
            .map(|t| t.storage_and_layout());
        let x = cpu_values::<f32>(&held[0])?;
        let library = cpu_values::<f32>(&held[1])?;
        let nz_values = cpu_values::<f32>(&held[2])?;
        let nz_genes = cpu_values::<u32>(&held[3])?;
        let theta: Vec<f32> = theta_raw.iter().map(|r| r.exp()).collect();
        let log_theta: Vec<f32> = theta.iter().map(|t| (t + NB_EPS as f32).ln()).collect();
        let theta_ratio: Vec<f32> = theta.iter().map(|t| t / (t + NB_EPS as f32)).collect();
        let mut dlogits = vec![0f32; n * g];
        let partials: Vec<Partial> = dlogits
            .par_chunks_mut(ROWS_PER_TASK * g)
            .enumerate()
            .map(|(task, out)| {
                let mut part = Partial {
                    value: 0.0,
                    dtheta: vec![0.0; g],
                };
                let mut p = vec![0f32; g];
                let mut dtheta_row = vec![0f32; g];
                for (r, drow) in out.chunks_mut(g).enumerate() {
                    let i = task * ROWS_PER_TASK + r;
                    let l = &logits[i * g..(i + 1) * g];
                    let xr = &x[i * g..(i + 1) * g];
                    let lib = library[i];
                    let max = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let mut s = 0f32;
                    for (pj, &lj) in p.iter_mut().zip(l) {
                        *pj = (lj - max).exp();
                        s += *pj;
                    }
                    let inv = 1.0 / s;
                    let mut value = 0f32;
                    let mut dot = 0f32;
                    for j in 0..g {
                        let pj = p[j] * inv;
                        p[j] = pj;
                        let mu = pj * lib;
                        let (xj, th) = (xr[j], theta[j]);
                        let a = mu + NB_EPS as f32;
                        let b = th + mu + NB_EPS as f32;
                        let lb = b.ln();
                        value += xj * (a.ln() - lb) - th * (lb - log_theta[j]);
                        let xb = (xj + th) / b;
                        // d/dp_j = d/dmu_j * library
                        let gp = (xj / a - xb) * lib;
                        drow[j] = gp;
                        dot += pj * gp;
                        dtheta_row[j] = log_theta[j] - lb + theta_ratio[j] - xb;
                    }
                    for j in 0..g {
                        drow[j] = p[j] * (drow[j] - dot);
                        part.dtheta[j] += dtheta_row[j] as f64;
                    }
                    part.value += value as f64;
                }
                part
            })
            .collect();
        let mut value = 0f64;
        let mut dtheta = vec![0f64; g];
        for part in partials {
            value += part.value;
            for (d, p) in dtheta.iter_mut().zip(&part.dtheta) {
                *d += p;
            }
        }
        // lgamma(x + theta) - lgamma(theta) at the non-zero counts; d/dtheta is
        // digamma(x + theta) - digamma(theta).
        let mut per_gene = vec![0u32; g];
        for (&v, &j) in nz_values.iter().zip(nz_genes) {
            let j = j as usize;
            let (lg, dg) = lgamma_digamma(v as f64 + theta[j] as f64);
            value += lg;
            dtheta[j] += dg;
            per_gene[j] += 1;
        }
        for (j, &count) in per_gene.iter().enumerate() {
            if count > 0 {
                let (lg, dg) = lgamma_digamma(theta[j] as f64);
                value -= count as f64 * lg;
                dtheta[j] -= count as f64 * dg;
            }
        }
        // d/d theta_raw = d/d theta * theta.
        let dtheta_raw = dtheta
            .iter()
            .zip(&theta)
            .map(|(d, t)| (*d * *t as f64) as f32)
            .collect();
        *self.grads.lock().map_err(|_| lock_error())? = Some((dlogits, dtheta_raw));
        Ok((CpuStorage::F32(vec![value as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        arg1: &Tensor,
        arg2: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let guard = self.grads.lock().map_err(|_| lock_error())?;
        let Some((dl, dt)) = guard.as_ref() else {
            candle_core::bail!("fused NB: backward before forward")
        };
        let scale = grad_res.to_dtype(candle_core::DType::F32)?;
        let dl = Tensor::from_slice(dl, arg1.shape(), arg1.device())?.broadcast_mul(&scale)?;
        let dt = Tensor::from_slice(dt, arg2.shape(), arg2.device())?.broadcast_mul(&scale)?;
        Ok((Some(dl), Some(dt)))
    }
}

fn lock_error() -> candle_core::Error {
    candle_core::Error::Msg("fused NB: gradient store poisoned".into())
}

/// `log Gamma(x)` for `x > 0` in f64 (host; Lanczos-free: recurrence then Stirling).
pub fn ln_gamma(mut x: f64) -> f64 {
    let mut shift = 0.0;
    while x < 7.0 {
        shift -= x.ln();
        x += 1.0;
    }
    shift + stirling(x, x.ln())
}

/// `(log Gamma(z), digamma(z))` for `z > 0` in f64: the recurrence up to `z >= 7`, then
/// Stirling's series and the asymptotic series of digamma (errors below 1e-9). The
/// recurrence multiplies its terms and takes one logarithm (one per count in the fused
/// pass, where [`ln_gamma`] would take up to seven).
pub fn lgamma_digamma(mut z: f64) -> (f64, f64) {
    let (mut product, mut psi) = (1.0f64, 0.0f64);
    while z < 7.0 {
        product *= z;
        psi -= 1.0 / z;
        z += 1.0;
    }
    let inv = 1.0 / z;
    let inv2 = inv * inv;
    let ln_z = z.ln();
    psi += ln_z - 0.5 * inv - inv2 * (1.0 / 12.0 - inv2 * (1.0 / 120.0 - inv2 / 252.0));
    (stirling(z, ln_z) - product.ln(), psi)
}

/// Stirling's series of `log Gamma(z)` for `z >= 7` (error below 1e-11), given `ln z`.
fn stirling(z: f64, ln_z: f64) -> f64 {
    let inv = 1.0 / z;
    let inv2 = inv * inv;
    (z - 0.5) * ln_z - z
        + 0.5 * LOG_2PI
        + inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0)))
}

/// `log(2 pi)`.
pub(crate) const LOG_2PI: f64 = 1.837_877_066_409_345_5;
