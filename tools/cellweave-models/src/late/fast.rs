//! LATE training on the CPU with a hand-written forward and backward pass.
//!
//! The loss only sees the entries where the input is non-zero, and the input is mostly
//! zeros, so two of the four default layers need a fraction of the dense work:
//! - the input layer sums the weight rows of the non-zero (and not dropped) inputs, and its
//!   weight gradient touches only those rows;
//! - the output layer computes only the outputs at the input's non-zero entries (one dot
//!   product each) and back-propagates only their errors.
//!
//! The dense middle layers use candle's matmul. Parameters live in host vectors in the
//! layouts these kernels want (see [`Params`]); Adam is one fused pass over them.
//! [`super::autograd`] computes the same loss and gradients with candle ops and autograd;
//! the tests check that the two agree.

use super::batch::{Batch, Masks};
use super::trainer::LateStep;
use super::{Late, LateConfig, TrainOptions};
use crate::kernels::{axpy, dot, sum_rows};
use crate::optim::Adam;
use crate::CandleExt;
use candle_core::{Device, Tensor};
use cellweave::Result;
use rayon::prelude::*;

/// Parameters as host vectors. `w[l]` is row-major `in_total(l) x out(l)` like
/// [`Late::weights`], except the output layer, stored transposed (`out x in_total`) so that
/// each gene's weights are one contiguous row.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Weights, one buffer per layer (the output layer's transposed).
    pub w: Vec<Vec<f32>>,
    /// Biases, one buffer of `out(l)` values per layer.
    pub b: Vec<Vec<f32>>,
}

fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = src[r * cols + c];
        }
    }
    out
}

impl Params {
    /// The model's parameters copied to the host, in this layout.
    pub fn from_model(m: &Late) -> Result<Params> {
        let (mut w, b) = m.to_host()?;
        let last = w.len() - 1;
        let cfg = &m.config;
        w[last] = transpose(&w[last], cfg.in_total(last), cfg.n_genes);
        Ok(Params { w, b })
    }

    /// Write these parameters into the model (back in its layout, on its device).
    pub fn to_model(&self, m: &mut Late) -> Result<()> {
        let mut w = self.w.clone();
        let last = w.len() - 1;
        w[last] = transpose(&w[last], m.config.n_genes, m.config.in_total(last));
        m.set_from_host(&w, &self.b)
    }

    /// Zeros of the same shapes (a gradient buffer).
    pub fn zeros_like(&self) -> Params {
        Params {
            w: self.w.iter().map(|v| vec![0.0; v.len()]).collect(),
            b: self.b.iter().map(|v| vec![0.0; v.len()]).collect(),
        }
    }

    fn copy_from(&mut self, other: &Params) {
        for (a, b) in self
            .w
            .iter_mut()
            .zip(&other.w)
            .chain(self.b.iter_mut().zip(&other.b))
        {
            a.copy_from_slice(b);
        }
    }
}

/// `a (m x k) @ b (k x n)` through candle, with either operand read transposed from its
/// stored row-major shape.
fn matmul(a: &Tensor, ta: bool, b: &Tensor, tb: bool) -> Result<Vec<f32>> {
    let a = if ta { a.t().ce()? } else { a.clone() };
    let b = if tb { b.t().ce()? } else { b.clone() };
    a.matmul(&b).ce()?.flatten_all().ce()?.to_vec1::<f32>().ce()
}

fn tensor(v: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
    Tensor::from_slice(v, (rows, cols), &Device::Cpu).ce()
}

/// Column sums of a row-major `n x d` matrix (fixed order: deterministic).
fn col_sums(m: &[f32], d: usize, out: &mut [f32]) {
    out.fill(0.0);
    for row in m.chunks_exact(d) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// Row sums of `m` per batch code into the covariate rows `w[base + code]` (width `d`).
fn cov_sums(m: &[f32], d: usize, cov: &[u32], w: &mut [f32], base: usize, n_batches: usize) {
    w[base * d..(base + n_batches) * d].fill(0.0);
    for (row, &c) in m.chunks_exact(d).zip(cov) {
        if (c as usize) < n_batches {
            let dst = &mut w[(base + c as usize) * d..(base + c as usize + 1) * d];
            for (o, v) in dst.iter_mut().zip(row) {
                *o += v;
            }
        }
    }
}

/// The loss of `batch` (mean over all `n x G` entries of the squared error at the non-zero
/// inputs) and, when `grads` is given, its gradient. `masks: None` means no dropout.
pub fn loss_and_grads(
    p: &Params,
    cfg: &LateConfig,
    batch: &Batch,
    masks: Option<&Masks>,
    grads: Option<&mut Params>,
) -> Result<f64> {
    let dims = cfg.dims();
    let n_layers = cfg.n_layers();
    let last = n_layers - 1;
    let (n, g, nb) = (batch.n(), cfg.n_genes, cfg.n_batches);
    if n == 0 {
        return Ok(0.0);
    }
    let covariate = |l: usize| cfg.has_covariate(l) && !batch.cov.is_empty();

    // ---- forward
    // acts[l]: output of layer l (post-ReLU), n x dims[l + 1], for l < last.
    // ins[l]: dropped-out input of layer l >= 1, n x dims[l].
    let mut acts: Vec<Vec<f32>> = Vec::with_capacity(last);
    let mut ins: Vec<Vec<f32>> = vec![Vec::new(); n_layers];
    {
        let out = dims[1];
        let (w0, b0) = (&p.w[0], &p.b[0]);
        let mut a = vec![0f32; n * out];
        a.par_chunks_mut(out).enumerate().for_each(|(i, row)| {
            row.copy_from_slice(b0);
            let entries = batch.range(i);
            let mut terms: Vec<(f32, &[f32])> = Vec::with_capacity(entries.len() + 1);
            for k in entries {
                let m = masks.map_or(1.0, |m| m.input[k]);
                if m != 0.0 {
                    let j = batch.x.indices[k] as usize;
                    terms.push((m * batch.x.data[k], &w0[j * out..(j + 1) * out]));
                }
            }
            if covariate(0) {
                let c = batch.cov[i] as usize;
                if c < nb {
                    terms.push((1.0, &w0[(g + c) * out..(g + c + 1) * out]));
                }
            }
            sum_rows(row, &terms);
            row.iter_mut().for_each(|v| *v = v.max(0.0));
        });
        acts.push(a);
    }
    let dropped = |l: usize, a: &[f32]| -> Vec<f32> {
        match masks {
            Some(m) => a.iter().zip(&m.hidden[l - 1]).map(|(x, k)| x * k).collect(),
            None => a.to_vec(),
        }
    };
    let mut weight_tensors: Vec<Option<Tensor>> = vec![None; n_layers];
    for l in 1..last {
        let (din, out) = (dims[l], dims[l + 1]);
        ins[l] = dropped(l, &acts[l - 1]);
        let wt = tensor(&p.w[l][..din * out], din, out)?;
        let mut z = matmul(&tensor(&ins[l], n, din)?, false, &wt, false)?;
        weight_tensors[l] = Some(wt);
        let (w, b) = (&p.w[l], &p.b[l]);
        let cov = covariate(l);
        z.par_chunks_mut(out).enumerate().for_each(|(i, row)| {
            axpy(1.0, b, row);
            if cov {
                let c = batch.cov[i] as usize;
                if c < nb {
                    axpy(1.0, &w[(din + c) * out..(din + c + 1) * out], row);
                }
            }
            row.iter_mut().for_each(|v| *v = v.max(0.0));
        });
        acts.push(z);
    }
    // Output layer: only the entries where the input is non-zero.
    let din = dims[last];
    let in_total = cfg.in_total(last);
    ins[last] = dropped(last, &acts[last - 1]);
    let (wl, bl) = (&p.w[last], &p.b[last]);
    let cov_last = covariate(last);
    let mut h = vec![0f32; batch.x.nnz()];
    {
        let mut parts: Vec<&mut [f32]> = Vec::with_capacity(n);
        let mut rest: &mut [f32] = &mut h;
        for i in 0..n {
            let (a, b) = rest.split_at_mut(batch.range(i).len());
            parts.push(a);
            rest = b;
        }
        let input = &ins[last];
        parts.into_par_iter().enumerate().for_each(|(i, hrow)| {
            let x = &input[i * din..(i + 1) * din];
            let base = batch.range(i).start;
            for (o, hv) in hrow.iter_mut().enumerate() {
                let j = batch.x.indices[base + o] as usize;
                let wj = &wl[j * in_total..(j + 1) * in_total];
                let mut z = dot(x, &wj[..din]) + bl[j];
                if cov_last {
                    let c = batch.cov[i] as usize;
                    if c < nb {
                        z += wj[din + c];
                    }
                }
                *hv = z.max(0.0);
            }
        });
    }
    let scale = 1.0 / (n as f64 * g as f64);
    let sse: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            batch
                .range(i)
                .map(|k| {
                    let d = (h[k] - batch.x.data[k]) as f64;
                    d * d
                })
                .sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    let loss = sse * scale;
    let Some(gr) = grads else { return Ok(loss) };

    // ---- backward
    // Gradient at each output entry (zero where the ReLU is off).
    let gk: Vec<f32> = h
        .iter()
        .zip(&batch.x.data)
        .map(|(&hv, &x)| {
            if hv > 0.0 {
                (2.0 * (hv - x) as f64 * scale) as f32
            } else {
                0.0
            }
        })
        .collect();
    {
        // Per gene, the cells where it is non-zero and the gradient at those outputs.
        let gk_by_gene = batch.by_gene(&gk);
        let input = &ins[last];
        let dw = &mut gr.w[last];
        let db = &mut gr.b[last];
        dw.par_chunks_mut(in_total)
            .zip(db.par_iter_mut())
            .enumerate()
            .for_each(|(j, (row, bj))| {
                row.fill(0.0);
                let mut s = 0f32;
                let (cells, grads) = gk_by_gene.row(j);
                let mut terms: Vec<(f32, &[f32])> = Vec::with_capacity(cells.len());
                for (&i, &gv) in cells.iter().zip(grads) {
                    let i = i as usize;
                    if gv != 0.0 {
                        terms.push((gv, &input[i * din..(i + 1) * din]));
                        if cov_last {
                            let c = batch.cov[i] as usize;
                            if c < nb {
                                row[din + c] += gv;
                            }
                        }
                        s += gv;
                    }
                }
                sum_rows(&mut row[..din], &terms);
                *bj = s;
            });
    }
    // Gradient wrt the output layer's input, then through its dropout and the ReLU below.
    // (Branch-free so that the loops vectorize.)
    let through = |l: usize, gd: &mut [f32], act: &[f32]| match masks {
        Some(m) => gd
            .iter_mut()
            .zip(&m.hidden[l - 1])
            .zip(act)
            .for_each(|((gv, k), a)| *gv *= k * (*a > 0.0) as u32 as f32),
        None => gd
            .iter_mut()
            .zip(act)
            .for_each(|(gv, a)| *gv *= (*a > 0.0) as u32 as f32),
    };
    let mut dz = vec![0f32; n * din];
    dz.par_chunks_mut(din).enumerate().for_each(|(i, row)| {
        let terms: Vec<(f32, &[f32])> = batch
            .range(i)
            .filter(|&k| gk[k] != 0.0)
            .map(|k| {
                let j = batch.x.indices[k] as usize;
                (gk[k], &wl[j * in_total..j * in_total + din])
            })
            .collect();
        sum_rows(row, &terms);
    });
    through(last, &mut dz, &acts[last - 1]);
    // Middle layers, top down: dz is the gradient wrt layer l's pre-activation.
    for l in (1..last).rev() {
        let (din, out) = (dims[l], dims[l + 1]);
        let dzt = tensor(&dz, n, out)?;
        let dw = matmul(&tensor(&ins[l], n, din)?, true, &dzt, false)?;
        gr.w[l][..din * out].copy_from_slice(&dw);
        if covariate(l) {
            cov_sums(&dz, out, &batch.cov, &mut gr.w[l], din, nb);
        }
        col_sums(&dz, out, &mut gr.b[l]);
        let wt = weight_tensors[l].take().expect("forward kept the weight");
        let mut gd = matmul(&dzt, false, &wt, true)?;
        through(l, &mut gd, &acts[l - 1]);
        dz = gd;
    }
    // Input layer: only the rows of the non-zero, kept inputs.
    let out = dims[1];
    {
        // Per gene, the cells where it is non-zero and kept, and its dropped-out input value
        // there (0 where the input mask drops it; the values themselves are not 0).
        let kept: Vec<f32> = (0..batch.x.nnz())
            .map(|k| {
                let m = masks.map_or(1.0, |m| m.input[k]);
                if m != 0.0 {
                    m * batch.x.data[k]
                } else {
                    0.0
                }
            })
            .collect();
        let kept_by_gene = batch.by_gene(&kept);
        let dw = &mut gr.w[0];
        dw[..g * out]
            .par_chunks_mut(out)
            .enumerate()
            .for_each(|(j, row)| {
                row.fill(0.0);
                let (cells, values) = kept_by_gene.row(j);
                let mut terms: Vec<(f32, &[f32])> = Vec::with_capacity(cells.len());
                for (&i, &v) in cells.iter().zip(values) {
                    if v != 0.0 {
                        let i = i as usize;
                        terms.push((v, &dz[i * out..(i + 1) * out]));
                    }
                }
                sum_rows(row, &terms);
            });
        if covariate(0) {
            cov_sums(&dz, out, &batch.cov, dw, g, nb);
        }
        col_sums(&dz, out, &mut gr.b[0]);
    }
    Ok(loss)
}

impl Params {
    /// The optimiser over these parameters (every weight buffer, then every bias).
    pub fn adam(&self, opts: &TrainOptions) -> Adam {
        Adam::for_buffers(self.w.iter().chain(&self.b).map(Vec::len), opts.adam())
    }

    /// One optimiser step with `grad` (same layout).
    pub fn adam_step(&mut self, adam: &mut Adam, grad: &Params) -> Result<()> {
        let params = self.w.iter_mut().chain(self.b.iter_mut());
        let grads = grad.w.iter().chain(&grad.b).map(Vec::as_slice).collect();
        adam.step_buffers(params.map(Vec::as_mut_slice).collect(), grads)
            .ce()
    }
}

/// The hand-written CPU step: parameters in host buffers, the crate's Adam over them.
pub(crate) struct FastStep {
    cfg: LateConfig,
    params: Params,
    grads: Params,
    best: Params,
    adam: Adam,
}

impl FastStep {
    pub(crate) fn new(model: &Late, opts: &TrainOptions) -> Result<FastStep> {
        let params = Params::from_model(model)?;
        Ok(FastStep {
            cfg: model.config.clone(),
            grads: params.zeros_like(),
            best: params.clone(),
            adam: params.adam(opts),
            params,
        })
    }
}

impl LateStep for FastStep {
    fn step(&mut self, batch: &Batch, masks: &Masks) -> Result<f64> {
        let loss = loss_and_grads(
            &self.params,
            &self.cfg,
            batch,
            Some(masks),
            Some(&mut self.grads),
        )?;
        self.params.adam_step(&mut self.adam, &self.grads)?;
        Ok(loss)
    }
    fn loss(&self, batch: &Batch) -> Result<f64> {
        loss_and_grads(&self.params, &self.cfg, batch, None, None)
    }
    fn keep_best(&mut self) -> Result<()> {
        self.best.copy_from(&self.params);
        Ok(())
    }
    fn into_best(self: Box<Self>, model: &mut Late) -> Result<()> {
        self.best.to_model(model)
    }
}
