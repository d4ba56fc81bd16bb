//! MoCo with a momentum key encoder, a queue of negatives and the symmetric InfoNCE loss,
//! as CLAIRE trains it.
//!
//! One step on a batch of `2B` rows (view 1 of `B` anchors, then view 2 of the same
//! anchors): momentum-update the key encoder, encode both views with both encoders
//! (independent dropout masks), loss = mean of InfoNCE(q1, k2) and InfoNCE(q2, k1) against
//! the queue as it was before the step, Adam step on the query encoder, then enqueue k1
//! and k2.

use candle_core::{Device, Tensor, D};
use std::collections::HashMap;

use super::encoder::{draw_masks, Encoder};
use crate::optim::{ema_update, with_cpu_slice, with_cpu_slice_mut, Adam, AdamConfig};
use crate::rng::Rng;

/// MoCo hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MocoParams {
    /// Key encoder momentum m (key = m * key + (1 - m) * query).
    pub momentum: f32,
    /// Softmax temperature.
    pub temperature: f64,
    /// Number of keys in the queue of negatives.
    pub queue_size: usize,
    /// Dropout probability after the first two layers.
    pub dropout: f32,
}

impl Default for MocoParams {
    fn default() -> Self {
        MocoParams {
            momentum: 0.999,
            temperature: 0.07,
            queue_size: 2048,
            dropout: 0.3,
        }
    }
}

/// The full training state of a CLAIRE model.
pub struct Moco {
    /// The hyperparameters it trains with.
    pub params: MocoParams,
    /// The encoder the optimiser trains (gives the queries).
    pub query: Encoder,
    /// The momentum encoder: a moving average of the query encoder (gives the keys).
    pub key: Encoder,
    /// `[queue_size, latent]`, one key per row.
    pub queue: Tensor,
    /// Next row of the queue to overwrite.
    pub ptr: usize,
    /// Adam over the query encoder's variables, with its moment estimates.
    pub opt: Adam,
}

/// InfoNCE with label 0 over logits `[q . kpos, q . queue] / T`, averaged over rows:
/// returns the loss and its gradient with respect to `q`.
pub fn info_nce(
    q: &Tensor,
    kpos: &Tensor,
    queue: &Tensor,
    temperature: f64,
) -> candle_core::Result<(f64, Tensor)> {
    let n = q.dim(0)?;
    let lpos = (q * kpos)?.sum_keepdim(D::Minus1)?;
    let lneg = q.matmul(&queue.t()?)?;
    let logits = (Tensor::cat(&[&lpos, &lneg], 1)? / temperature)?;
    let max = logits.max_keepdim(D::Minus1)?;
    let shifted = logits.broadcast_sub(&max)?;
    let e = shifted.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    let loss = (s.log()? - shifted.narrow(1, 0, 1)?)?
        .mean_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    // d loss / d logits = (softmax - onehot(0)) / n; logits carry 1/T.
    let p = e.broadcast_div(&s)?;
    let scale = 1.0 / (n as f64 * temperature);
    let dpos = ((p.narrow(1, 0, 1)? - 1.0)? * scale)?;
    let dneg = (p.narrow(1, 1, queue.dim(0)?)? * scale)?;
    let dq = (kpos.broadcast_mul(&dpos)? + dneg.matmul(queue)?)?;
    Ok((loss, dq))
}

impl Moco {
    /// A fresh model: key encoder = copy of the query encoder, queue of zeros.
    pub fn new(query: Encoder, params: MocoParams, adam: AdamConfig) -> candle_core::Result<Self> {
        let key = query.deep_clone()?;
        let device = query.layers[0].w.device().clone();
        let queue = Tensor::zeros(
            (params.queue_size, query.latent()),
            candle_core::DType::F32,
            &device,
        )?;
        let opt = Adam::new(query.vars(), adam)?;
        Ok(Moco {
            params,
            query,
            key,
            queue,
            ptr: 0,
            opt,
        })
    }

    /// The device the model's tensors live on.
    pub fn device(&self) -> Device {
        self.queue.device().clone()
    }

    /// Write keys into the queue at the pointer (wrapping around) and advance it.
    pub fn enqueue(&mut self, keys: &Tensor) -> candle_core::Result<()> {
        let (n, d) = keys.dims2()?;
        let k = self.params.queue_size;
        if n > k {
            // Only the last K keys survive.
            return self.enqueue(&keys.narrow(0, n - k, k)?);
        }
        if self.queue.device().is_cpu() {
            let keys = keys.contiguous()?;
            let ptr = self.ptr;
            with_cpu_slice(&keys, |ks| {
                with_cpu_slice_mut(&self.queue, |qs| {
                    for r in 0..n {
                        let dst = (ptr + r) % k;
                        qs[dst * d..(dst + 1) * d].copy_from_slice(&ks[r * d..(r + 1) * d]);
                    }
                })
            })??;
        } else {
            let first = n.min(k - self.ptr);
            self.queue = self.queue.slice_assign(
                &[self.ptr..self.ptr + first, 0..d],
                &keys.narrow(0, 0, first)?,
            )?;
            if first < n {
                self.queue = self
                    .queue
                    .slice_assign(&[0..n - first, 0..d], &keys.narrow(0, first, n - first)?)?;
            }
        }
        self.ptr = (self.ptr + n) % k;
        Ok(())
    }

    /// One training step on `x` = `[view1; view2]` (`2B` rows); returns the loss.
    pub fn step(&mut self, x: &Tensor, rng: &mut Rng) -> candle_core::Result<f64> {
        let n = x.dim(0)?;
        if !n.is_multiple_of(2) || n == 0 {
            return Err(candle_core::Error::Msg(
                "a MoCo batch holds two views of the same anchors".into(),
            ));
        }
        let b = n / 2;
        let device = self.device();
        ema_update(&self.key.vars(), &self.query.vars(), self.params.momentum)?;
        let hidden = self.query.hidden();
        let mq = draw_masks(n, hidden, self.params.dropout, rng, &device)?;
        let mk = draw_masks(n, hidden, self.params.dropout, rng, &device)?;
        let tq = self.query.forward_train(x, &mq)?;
        let k = self.key.forward_train(x, &mk)?.out.detach();
        // Rows of view 1 are paired with keys of view 2 and vice versa.
        let kpos = Tensor::cat(&[k.narrow(0, b, b)?, k.narrow(0, 0, b)?], 0)?;
        let (loss, dq) = info_nce(
            &tq.out.detach(),
            &kpos,
            &self.queue,
            self.params.temperature,
        )?;
        let grads = self.query.backward(&tq, &dq)?;
        self.opt.step_tensors(&grads)?;
        self.enqueue(&k.narrow(0, 0, b)?)?;
        self.enqueue(&k.narrow(0, b, b)?)?;
        Ok(loss)
    }

    /// Every tensor of the training state, by name (for a checkpoint).
    pub fn state(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut out: HashMap<String, Tensor> = HashMap::new();
        for (n, t) in self
            .query
            .named("encoder_q.")
            .into_iter()
            .chain(self.key.named("encoder_k."))
        {
            out.insert(n, t.to_device(&Device::Cpu)?);
        }
        out.insert("queue".into(), self.queue.to_device(&Device::Cpu)?);
        out.insert(
            "queue_ptr".into(),
            Tensor::from_slice(&[self.ptr as u32], 1, &Device::Cpu)?,
        );
        out.extend(self.opt.state("adam.")?);
        Ok(out)
    }

    /// Restore a state written by [`Moco::state`] onto `device`.
    pub fn from_state(
        t: &HashMap<String, Tensor>,
        params: MocoParams,
        adam: AdamConfig,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let query = Encoder::from_tensors(t, "encoder_q.", device)?;
        let key = Encoder::from_tensors(t, "encoder_k.", device)?;
        let get = |n: &str| {
            t.get(n)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {n}")))
        };
        let queue = get("queue")?
            .to_dtype(candle_core::DType::F32)?
            .to_device(device)?
            .copy()?;
        if queue.dims2()? != (params.queue_size, query.latent()) {
            return Err(candle_core::Error::Msg(
                "the saved queue does not match the queue size".into(),
            ));
        }
        let ptr = get("queue_ptr")?.to_vec1::<u32>()?[0] as usize;
        let mut opt = Adam::new(query.vars(), adam)?;
        opt.load_state("adam.", t)?;
        Ok(Moco {
            params,
            query,
            key,
            queue,
            ptr: ptr % params.queue_size,
            opt,
        })
    }
}
