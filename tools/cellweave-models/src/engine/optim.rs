//! The engine's one optimiser: fused Adam / AdamW over the raw buffers of candle [`Var`]s
//! or of a hand-written model's host vectors.
//!
//! Written as candle tensor ops, Adam costs about 15 element-wise ops per parameter; here one pass
//! over each parameter reads the gradient, updates both moments and the parameter, with
//! the same arithmetic as `torch.optim.Adam` / `torch.optim.AdamW` (bias-corrected moments,
//! `eps` added to the bias-corrected square root). Weight decay is either L2 (Adam's
//! `weight_decay`: `grad += wd * param`) or decoupled (AdamW: `param *= 1 - lr * wd`).
//!
//! On the CPU the update runs in place through candle's in-place custom op; on another
//! device (CUDA) the same maths runs as candle tensor ops. Gradients come either from
//! candle's autograd ([`Adam::step`] with a `GradStore`), as tensors
//! ([`Adam::step_tensors`]) or from a hand-written backward ([`Adam::step_slices`]); a
//! model whose parameters are plain vectors uses [`Adam::for_buffers`] and
//! [`Adam::step_buffers`] (the same update, in parallel chunks). The moments can be exported and restored ([`Adam::state`],
//! [`Adam::load_state`]) so a checkpoint resumes bit for bit.
//!
//! [`ema_update`] (`key = m * key + (1 - m) * query`) is the same kind of fused loop, for
//! momentum (MoCo) encoders.

use candle_core::backend::BackendStorage;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, Device, Layout, Storage, Tensor, Var};
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;

use crate::kernels::dispatch;

/// How weight decay enters the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightDecay {
    /// `torch.optim.Adam(weight_decay=wd)`: `grad += wd * param` before the moments.
    L2,
    /// `torch.optim.AdamW(weight_decay=wd)`: `param *= 1 - lr * wd` before the update.
    Decoupled,
}

/// Adam hyperparameters (torch defaults but `lr`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay rate of the first-moment average.
    pub beta1: f64,
    /// Decay rate of the second-moment average.
    pub beta2: f64,
    /// Added to the square root of the second moment.
    pub eps: f64,
    /// Weight-decay coefficient (0: none).
    pub weight_decay: f64,
    /// How the weight decay is applied (L2 into the gradient, or decoupled as AdamW).
    pub decay: WeightDecay,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decay: WeightDecay::L2,
        }
    }
}

impl AdamConfig {
    /// torch's Adam at learning rate `lr` with the L2 weight decay `weight_decay`.
    pub fn l2(lr: f64, weight_decay: f64) -> Self {
        AdamConfig {
            lr,
            weight_decay,
            decay: WeightDecay::L2,
            ..Default::default()
        }
    }
}

/// First and second moments of one parameter.
enum Moments {
    Cpu { m: Vec<f32>, v: Vec<f32> },
    Device { m: Tensor, v: Tensor },
}

/// Adam over a fixed list of parameters: candle variables (updated in place on the CPU,
/// by tensor ops elsewhere) or plain host buffers of hand-written models
/// ([`Adam::for_buffers`], [`Adam::step_buffers`]). Every path runs the same arithmetic.
pub struct Adam {
    /// The settings every step uses.
    pub config: AdamConfig,
    /// The variables (empty for an optimiser over host buffers).
    vars: Vec<Var>,
    moments: Vec<Moments>,
    /// Number of steps taken (torch's `state['step']`).
    pub step: u64,
}

/// Scalars of one update, computed in f64 as torch does, applied in f32.
#[derive(Clone, Copy)]
struct Coefs {
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    /// lr / (1 - beta1^t)
    step_size: f32,
    /// sqrt(1 - beta2^t)
    bc2_sqrt: f32,
    eps: f32,
    /// L2 weight decay added to the gradient (0 when decoupled).
    wd_l2: f32,
    /// Decoupled decay factor `1 - lr * wd` (1 when L2).
    decay_factor: f32,
}

impl Coefs {
    fn new(c: &AdamConfig, step: u64) -> Self {
        let t = step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        let (wd_l2, decay_factor) = match c.decay {
            WeightDecay::L2 => (c.weight_decay as f32, 1.0),
            WeightDecay::Decoupled => (0.0, (1.0 - c.lr * c.weight_decay) as f32),
        };
        Coefs {
            one_minus_b1: (1.0 - c.beta1) as f32,
            b2: c.beta2 as f32,
            one_minus_b2: (1.0 - c.beta2) as f32,
            step_size: (c.lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: c.eps as f32,
            wd_l2,
            decay_factor,
        }
    }
}

dispatch! {
    /// The fused update of one buffer: torch's arithmetic, one pass.
    fn adam_kernel(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Coefs) {
        let n = p.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        for i in 0..n {
            let mut pi = p[i];
            let gi = g[i] + c.wd_l2 * pi;
            pi *= c.decay_factor;
            // torch: exp_avg.lerp_(grad, 1 - beta1) == m + (1 - beta1) * (g - m)
            let mi = m[i] + c.one_minus_b1 * (gi - m[i]);
            let vi = c.b2 * v[i] + c.one_minus_b2 * gi * gi;
            let denom = vi.sqrt() / c.bc2_sqrt + c.eps;
            p[i] = pi - c.step_size * (mi / denom);
            m[i] = mi;
            v[i] = vi;
        }
    }
}

/// Element-wise passes over buffers this long or longer run in parallel chunks (the result
/// does not depend on the thread count: every element is computed the same way).
const PAR_CHUNK: usize = 1 << 15;

/// One fused Adam update of a parameter buffer (exposed for tests and hand-written models),
/// in parallel chunks when the buffer is long and the pool has more than one thread.
pub fn adam_update(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    config: &AdamConfig,
    step: u64,
) {
    assert!(
        g.len() == p.len() && m.len() == p.len() && v.len() == p.len(),
        "adam: buffer sizes differ"
    );
    let c = Coefs::new(config, step);
    if p.len() >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1 {
        p.par_chunks_mut(PAR_CHUNK)
            .zip(g.par_chunks(PAR_CHUNK))
            .zip(m.par_chunks_mut(PAR_CHUNK))
            .zip(v.par_chunks_mut(PAR_CHUNK))
            .for_each(|(((p, g), m), v)| adam_kernel(p, g, m, v, c));
    } else {
        adam_kernel(p, g, m, v, c)
    }
}

/// In-place op that runs [`adam_update`] on a parameter's CPU storage.
struct AdamOp<'a> {
    grad: &'a [f32],
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    config: AdamConfig,
    step: u64,
}

impl candle_core::InplaceOp1 for AdamOp<'_> {
    fn name(&self) -> &'static str {
        "fused-adam"
    }
    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let p = contiguous_mut(storage, layout)?;
        adam_update(
            p,
            self.grad,
            &mut self.m.borrow_mut(),
            &mut self.v.borrow_mut(),
            &self.config,
            self.step,
        );
        Ok(())
    }
}

/// The f32 values of a contiguous CPU storage, mutable.
fn contiguous_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a mut [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused op: tensor is not contiguous".into()))?;
    match storage {
        CpuStorage::F32(data) => Ok(&mut data[start..end]),
        other => Err(candle_core::Error::Msg(format!(
            "fused op: expected f32, found {:?}",
            other.dtype()
        ))),
    }
}

/// The values of a contiguous CPU storage as `T`, as a custom op's `cpu_fwd` receives it.
pub fn storage_slice<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("custom op: input is not contiguous"),
    }
}

/// Run `f` on the f32 values of a contiguous CPU tensor (read only, no copy).
pub fn with_cpu_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("tensor is not contiguous".into()))?;
    match &*storage {
        Storage::Cpu(CpuStorage::F32(data)) => Ok(f(&data[start..end])),
        Storage::Cpu(other) => Err(candle_core::Error::Msg(format!(
            "expected f32, found {:?}",
            other.dtype()
        ))),
        _ => Err(candle_core::Error::Msg("expected a CPU tensor".into())),
    }
}

/// In-place op that runs `f` on a tensor's f32 CPU values.
struct MutOp<F>(RefCell<Option<F>>);

impl<F: FnOnce(&mut [f32])> candle_core::InplaceOp1 for MutOp<F> {
    fn name(&self) -> &'static str {
        "mut-slice"
    }
    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let p = contiguous_mut(storage, layout)?;
        if let Some(f) = self.0.borrow_mut().take() {
            f(p);
        }
        Ok(())
    }
}

/// Run `f` on the f32 values of a contiguous CPU tensor, in place (the tensor must not be
/// borrowed elsewhere at the same time).
pub fn with_cpu_slice_mut(t: &Tensor, f: impl FnOnce(&mut [f32])) -> candle_core::Result<()> {
    if !t.device().is_cpu() {
        return Err(candle_core::Error::Msg("expected a CPU tensor".into()));
    }
    t.inplace_op1(&MutOp(RefCell::new(Some(f))))
}

impl Adam {
    /// An optimiser over `vars` (f32, any device) with zeroed moments.
    pub fn new(vars: Vec<Var>, config: AdamConfig) -> candle_core::Result<Self> {
        let moments = vars
            .iter()
            .map(|var| {
                if var.device().is_cpu() {
                    Ok(Moments::Cpu {
                        m: vec![0.0; var.elem_count()],
                        v: vec![0.0; var.elem_count()],
                    })
                } else {
                    Ok(Moments::Device {
                        m: var.zeros_like()?,
                        v: var.zeros_like()?,
                    })
                }
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Adam {
            config,
            vars,
            moments,
            step: 0,
        })
    }

    /// An optimiser over host buffers of these lengths, in the order
    /// [`Adam::step_buffers`] will pass them, with zeroed moments.
    pub fn for_buffers(lens: impl IntoIterator<Item = usize>, config: AdamConfig) -> Self {
        let moments = lens
            .into_iter()
            .map(|n| Moments::Cpu {
                m: vec![0.0; n],
                v: vec![0.0; n],
            })
            .collect();
        Adam {
            config,
            vars: Vec::new(),
            moments,
            step: 0,
        }
    }

    /// One step over host buffers (one gradient per buffer, in order), each buffer updated
    /// in parallel chunks (element-wise: the result does not depend on the thread count).
    pub fn step_buffers(
        &mut self,
        params: Vec<&mut [f32]>,
        grads: Vec<&[f32]>,
    ) -> candle_core::Result<()> {
        self.check_count(grads.len())?;
        if params.len() != grads.len() {
            return Err(candle_core::Error::Msg(format!(
                "adam: {} buffers for {} gradients",
                params.len(),
                grads.len()
            )));
        }
        self.step += 1;
        let (step, config) = (self.step, &self.config);
        for ((pv, gv), mom) in params.into_iter().zip(grads).zip(self.moments.iter_mut()) {
            let Moments::Cpu { m, v } = mom else {
                return Err(candle_core::Error::Msg(
                    "adam: host buffers need host moments".into(),
                ));
            };
            if gv.len() != pv.len() || m.len() != pv.len() {
                return Err(candle_core::Error::Msg(format!(
                    "adam: buffer of {} values, gradient of {}, moments of {}",
                    pv.len(),
                    gv.len(),
                    m.len()
                )));
            }
            adam_update(pv, gv, m, v, config, step);
        }
        Ok(())
    }

    /// The variables it updates, in order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Change the learning rate of the following steps.
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// One step with gradients from candle's autograd (a variable without a gradient is
    /// left untouched, as torch does for `grad is None`).
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.check_vars()?;
        self.step += 1;
        for (var, mom) in self.vars.iter().zip(self.moments.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            update_one(var, g, mom, &self.config, self.step)?;
        }
        Ok(())
    }

    /// An error unless this optimiser is over candle variables (not host buffers).
    fn check_vars(&self) -> candle_core::Result<()> {
        if self.vars.len() != self.moments.len() {
            return Err(candle_core::Error::Msg(
                "adam: this optimiser holds host buffers (use step_buffers)".into(),
            ));
        }
        Ok(())
    }

    /// An error unless there are as many gradients as parameters.
    fn check_count(&self, n_grads: usize) -> candle_core::Result<()> {
        if n_grads != self.moments.len() {
            return Err(candle_core::Error::Msg(format!(
                "adam: {n_grads} gradients for {} parameters",
                self.moments.len()
            )));
        }
        Ok(())
    }

    /// One step with one gradient tensor per variable, in order (any device).
    pub fn step_tensors(&mut self, grads: &[Tensor]) -> candle_core::Result<()> {
        self.check_vars()?;
        self.check_count(grads.len())?;
        self.step += 1;
        for ((var, mom), g) in self.vars.iter().zip(self.moments.iter_mut()).zip(grads) {
            if g.shape() != var.shape() {
                return Err(candle_core::Error::Msg(format!(
                    "adam: gradient of shape {:?} for a variable of shape {:?}",
                    g.shape(),
                    var.shape()
                )));
            }
            update_one(var, g, mom, &self.config, self.step)?;
        }
        Ok(())
    }

    /// One step with gradients given as f32 slices, one per variable in order (CPU only).
    pub fn step_slices(&mut self, grads: &[&[f32]]) -> candle_core::Result<()> {
        self.check_vars()?;
        self.check_count(grads.len())?;
        self.step += 1;
        for ((var, mom), g) in self.vars.iter().zip(self.moments.iter_mut()).zip(grads) {
            let Moments::Cpu { m, v } = mom else {
                return Err(candle_core::Error::Msg(
                    "adam: slice gradients need CPU variables".into(),
                ));
            };
            if g.len() != var.elem_count() {
                return Err(candle_core::Error::Msg(format!(
                    "adam: gradient of {} values for a variable of {}",
                    g.len(),
                    var.elem_count()
                )));
            }
            var.inplace_op1(&AdamOp {
                grad: g,
                m: RefCell::new(m),
                v: RefCell::new(v),
                config: self.config,
                step: self.step,
            })?;
        }
        Ok(())
    }

    /// The moments as named tensors (`<prefix>m.<i>`, `<prefix>v.<i>`) plus the step
    /// count, for a checkpoint (of an optimiser over variables).
    pub fn state(&self, prefix: &str) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (var, mom)) in self.vars.iter().zip(&self.moments).enumerate() {
            let (m, v) = match mom {
                Moments::Cpu { m, v } => (
                    Tensor::from_slice(m, var.shape(), &Device::Cpu)?,
                    Tensor::from_slice(v, var.shape(), &Device::Cpu)?,
                ),
                Moments::Device { m, v } => {
                    (m.to_device(&Device::Cpu)?, v.to_device(&Device::Cpu)?)
                }
            };
            out.insert(format!("{prefix}m.{i}"), m);
            out.insert(format!("{prefix}v.{i}"), v);
        }
        // The step count as two u32 halves (safetensors via candle has no u64 I/O here).
        let s = [(self.step & 0xffff_ffff) as u32, (self.step >> 32) as u32];
        out.insert(
            format!("{prefix}step"),
            Tensor::from_slice(&s, 2, &Device::Cpu)?,
        );
        Ok(out)
    }

    /// Restore what [`Adam::state`] wrote.
    pub fn load_state(
        &mut self,
        prefix: &str,
        tensors: &HashMap<String, Tensor>,
    ) -> candle_core::Result<()> {
        let get = |name: String| {
            tensors
                .get(&name)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("missing optimiser tensor {name}")))
        };
        let s = get(format!("{prefix}step"))?.to_vec1::<u32>()?;
        for (i, (var, mom)) in self.vars.iter().zip(self.moments.iter_mut()).enumerate() {
            let m = get(format!("{prefix}m.{i}"))?;
            let v = get(format!("{prefix}v.{i}"))?;
            if m.shape() != var.shape() || v.shape() != var.shape() {
                return Err(candle_core::Error::Msg(format!(
                    "optimiser state {i} has the wrong shape"
                )));
            }
            *mom = match mom {
                Moments::Cpu { .. } => Moments::Cpu {
                    m: m.flatten_all()?.to_vec1()?,
                    v: v.flatten_all()?.to_vec1()?,
                },
                Moments::Device { .. } => Moments::Device {
                    m: m.to_device(var.device())?,
                    v: v.to_device(var.device())?,
                },
            };
        }
        self.step = s[0] as u64 | ((s.get(1).copied().unwrap_or(0) as u64) << 32);
        Ok(())
    }
}

fn update_one(
    var: &Var,
    g: &Tensor,
    mom: &mut Moments,
    config: &AdamConfig,
    step: u64,
) -> candle_core::Result<()> {
    match mom {
        Moments::Cpu { m, v } => {
            let g = g.contiguous()?;
            with_cpu_slice(&g, |gs| {
                var.inplace_op1(&AdamOp {
                    grad: gs,
                    m: RefCell::new(m),
                    v: RefCell::new(v),
                    config: *config,
                    step,
                })
            })?
        }
        Moments::Device { m, v } => {
            // The same maths as tensor ops (CUDA): not fused, but on a GPU that is cheap.
            // Detached: ops on the variable are recorded for autograd, so without it each
            // step's moments would hold the graph of every earlier step (memory grows until
            // the device runs out: seen on an H200 after ~900 LATE steps).
            let c = Coefs::new(config, step);
            let p = &var.as_tensor().detach();
            let g = (g.detach() + (p * c.wd_l2 as f64)?)?;
            let new_m = (&*m + ((&g - &*m)? * c.one_minus_b1 as f64)?)?;
            let new_v = ((&*v * c.b2 as f64)? + (g.sqr()? * c.one_minus_b2 as f64)?)?;
            let denom = ((new_v.sqrt()? / c.bc2_sqrt as f64)? + c.eps as f64)?;
            let p_new = ((p * c.decay_factor as f64)? - ((&new_m / denom)? * c.step_size as f64)?)?;
            var.set(&p_new)?;
            *m = new_m.detach();
            *v = new_v.detach();
            Ok(())
        }
    }
}

dispatch! {
    /// Momentum update of a key buffer from a query buffer: `key = m * key + (1 - m) * query`.
    pub fn ema_slices(key: &mut [f32], query: &[f32], momentum: f32) {
        assert_eq!(key.len(), query.len());
        let one_minus = 1.0 - momentum;
        for (k, &q) in key.iter_mut().zip(query) {
            // torch: pk.mul_(m).add_(pq, alpha=1 - m)
            *k = *k * momentum + q * one_minus;
        }
    }
}

/// Momentum update of key variables from query variables (pairwise, same shapes).
pub fn ema_update(keys: &[Var], queries: &[Var], momentum: f32) -> candle_core::Result<()> {
    for (k, q) in keys.iter().zip(queries) {
        if k.device().is_cpu() {
            with_cpu_slice(q.as_tensor(), |qs| {
                with_cpu_slice_mut(k.as_tensor(), |ks| {
                    if ks.len() >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1 {
                        ks.par_chunks_mut(PAR_CHUNK)
                            .zip(qs.par_chunks(PAR_CHUNK))
                            .for_each(|(k, q)| ema_slices(k, q, momentum));
                    } else {
                        ema_slices(ks, qs, momentum)
                    }
                })
            })??;
        } else {
            let new =
                ((k.as_tensor() * momentum as f64)? + (q.as_tensor() * (1.0 - momentum as f64))?)?;
            k.set(&new)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain (unfused, f64) torch Adam for comparison.
    fn reference(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], c: &AdamConfig, t: i32) {
        for i in 0..p.len() {
            let mut gi = g[i];
            if c.decay == WeightDecay::L2 {
                gi += c.weight_decay * p[i];
            } else {
                p[i] *= 1.0 - c.lr * c.weight_decay;
            }
            m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
            v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
            let mh = m[i] / (1.0 - c.beta1.powi(t));
            let vh = v[i] / (1.0 - c.beta2.powi(t));
            p[i] -= c.lr * mh / (vh.sqrt() + c.eps);
        }
    }

    #[test]
    fn fused_adam_matches_textbook_adam() {
        for decay in [WeightDecay::L2, WeightDecay::Decoupled] {
            let c = AdamConfig {
                lr: 1e-2,
                weight_decay: 0.1,
                decay,
                ..Default::default()
            };
            let n = 37;
            let var = Var::from_vec(
                (0..n).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
                n,
                &Device::Cpu,
            )
            .unwrap();
            let mut p64: Vec<f64> = var
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|&x| x as f64)
                .collect();
            let (mut m64, mut v64) = (vec![0.0; n], vec![0.0; n]);
            let mut opt = Adam::new(vec![var.clone()], c).unwrap();
            for t in 1..=20 {
                let g: Vec<f32> = (0..n).map(|i| ((i * t) as f32 * 0.11).cos()).collect();
                let g64: Vec<f64> = g.iter().map(|&x| x as f64).collect();
                opt.step_slices(&[&g]).unwrap();
                reference(&mut p64, &g64, &mut m64, &mut v64, &c, t as i32);
            }
            let p = var.to_vec1::<f32>().unwrap();
            for (a, b) in p.iter().zip(&p64) {
                assert!((*a as f64 - b).abs() < 1e-5, "{decay:?}: {a} vs {b}");
            }
            assert_eq!(opt.step, 20);
        }
    }

    /// An Adam config with weight decay and two equal 3 x 4 variables.
    fn config_and_two_vars() -> (AdamConfig, Var, Var) {
        let c = AdamConfig {
            lr: 1e-3,
            weight_decay: 1e-5,
            ..Default::default()
        };
        let init: Vec<f32> = (0..12).map(|i| i as f32 / 7.0 - 0.5).collect();
        let a = Var::from_vec(init.clone(), (3, 4), &Device::Cpu).unwrap();
        let b = Var::from_vec(init, (3, 4), &Device::Cpu).unwrap();
        (c, a, b)
    }

    #[test]
    fn device_moments_hold_no_autograd_graph() {
        // The device (CUDA) arithmetic, run here on CPU tensors: the moments it keeps must
        // be plain values, not ops on the variable (or memory grows with every step), and
        // the update must match the host arithmetic.
        let (c, a, b) = config_and_two_vars();
        let mut mom = Moments::Device {
            m: a.zeros_like().unwrap(),
            v: a.zeros_like().unwrap(),
        };
        let mut ob = Adam::new(vec![b.clone()], c).unwrap();
        for step in 1..=3 {
            let loss = (a.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            let grads = loss.backward().unwrap();
            update_one(&a, grads.get(a.as_tensor()).unwrap(), &mut mom, &c, step).unwrap();
            let Moments::Device { m, v } = &mom else {
                unreachable!()
            };
            assert!(!m.track_op() && !v.track_op(), "step {step}");
            let g = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            ob.step_slices(&[&g]).unwrap();
        }
        let (x, y) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        for (p, q) in x.iter().zip(&y) {
            assert!((p - q).abs() <= 1e-6, "{p} vs {q}");
        }
    }

    #[test]
    fn autograd_and_slice_steps_agree_and_state_round_trips() {
        let (c, a, b) = config_and_two_vars();
        let mut oa = Adam::new(vec![a.clone()], c).unwrap();
        let mut ob = Adam::new(vec![b.clone()], c).unwrap();
        for _ in 0..3 {
            // loss = sum(p^2) / 2  => grad = p
            let loss = (a.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            oa.step(&loss.backward().unwrap()).unwrap();
            let g = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            ob.step_slices(&[&g]).unwrap();
        }
        assert_eq!(
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let st = oa.state("opt.").unwrap();
        let c2 = Var::from_tensor(&a.as_tensor().copy().unwrap()).unwrap();
        let mut oc = Adam::new(vec![c2.clone()], c).unwrap();
        oc.load_state("opt.", &st).unwrap();
        assert_eq!(oc.step, 3);
        let g = vec![0.25f32; 12];
        oa.step_slices(&[&g]).unwrap();
        oc.step_slices(&[&g]).unwrap();
        assert_eq!(
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            c2.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn ema_moves_key_towards_query() {
        let k = Var::from_vec(vec![1.0f32, 2.0, 3.0], 3, &Device::Cpu).unwrap();
        let q = Var::from_vec(vec![0.0f32, 0.0, 13.0], 3, &Device::Cpu).unwrap();
        ema_update(std::slice::from_ref(&k), &[q], 0.9).unwrap();
        let got = k.to_vec1::<f32>().unwrap();
        let want = [0.9f32, 1.8, 3.0 * 0.9 + 13.0 * 0.1];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
