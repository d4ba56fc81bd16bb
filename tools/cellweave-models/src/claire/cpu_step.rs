//! The MoCo training step on the CPU over raw buffers: the same maths as
//! [`Moco::step`](super::moco::Moco::step) (which is candle tensor ops and runs on any
//! device), with the matrix products written into preallocated buffers and every
//! element-wise stage fused into one pass. The parameters stay candle variables: they are
//! read through their storage and updated in place by the fused Adam.

use candle_core::{Layout, Storage, Tensor};
use std::sync::RwLockReadGuard;

use super::moco::Moco;
use crate::engine::process_cpu_seconds;
use crate::kernels::{
    add_scaled_rows, bias_relu_mask, col_sums, gemm, gemm_on, info_nce_rows, l2_normalize_rows,
    l2_relu_backward, relu_mask_backward, row_dots, Op,
};
use crate::optim::ema_update;
use crate::rng::Rng;

/// Read access to the f32 values of CPU tensors for the duration of a pass.
struct Reader<'a>(Vec<(RwLockReadGuard<'a, Storage>, &'a Layout)>);

impl<'a> Reader<'a> {
    fn new(ts: &[&'a Tensor]) -> Self {
        Reader(ts.iter().map(|t| t.storage_and_layout()).collect())
    }
    fn get(&self, i: usize) -> candle_core::Result<&[f32]> {
        let (s, l) = &self.0[i];
        let (a, b) = l
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("tensor is not contiguous".into()))?;
        match &**s {
            Storage::Cpu(candle_core::CpuStorage::F32(v)) => Ok(&v[a..b]),
            _ => Err(candle_core::Error::Msg(
                "the CPU step needs f32 CPU tensors".into(),
            )),
        }
    }
}

/// Preallocated buffers of one step shape.
#[derive(Default)]
pub struct Workspace {
    m1q: Vec<f32>,
    m2q: Vec<f32>,
    m1k: Vec<f32>,
    m2k: Vec<f32>,
    h1q: Vec<f32>,
    h2q: Vec<f32>,
    h3q: Vec<f32>,
    q: Vec<f32>,
    normq: Vec<f32>,
    h1k: Vec<f32>,
    h2k: Vec<f32>,
    h3k: Vec<f32>,
    k: Vec<f32>,
    normk: Vec<f32>,
    lpos: Vec<f32>,
    lneg: Vec<f32>,
    losses: Vec<f64>,
    dq: Vec<f32>,
    dh2: Vec<f32>,
    dh1: Vec<f32>,
    grads: [Vec<f32>; 6],
    /// CPU time per phase of the step, accumulated over steps when set (profiling).
    pub phases: Option<Phases>,
}

/// CPU time (this process, all threads) spent in each phase of [`Moco::step_cpu`], summed
/// over the steps taken while it is set on the [`Workspace`].
#[derive(Default)]
pub struct Phases {
    /// (phase, seconds), in the order the phases first ran.
    pub seconds: Vec<(&'static str, f64)>,
    last: f64,
}

impl Phases {
    fn start(&mut self) {
        self.last = process_cpu_seconds();
    }
    fn mark(&mut self, name: &'static str) {
        let now = process_cpu_seconds();
        let dt = now - self.last;
        self.last = now;
        match self.seconds.iter_mut().find(|(n, _)| *n == name) {
            Some((_, s)) => *s += dt,
            None => self.seconds.push((name, dt)),
        }
    }
}

/// Record the end of a phase when profiling.
fn mark(p: &mut Option<Phases>, name: &'static str) {
    if let Some(p) = p {
        p.mark(name);
    }
}

fn sized(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
}

/// The activations of one encoder's forward pass.
struct Acts<'a> {
    h1: &'a mut [f32],
    h2: &'a mut [f32],
    h3: &'a mut [f32],
    out: &'a mut [f32],
    norm: &'a mut [f32],
}

/// Forward of one encoder (weights `w` = [w1, b1, w2, b2, w3, b3]) with dropout masks, its
/// products on `threads` threads.
#[allow(clippy::too_many_arguments)]
fn forward(
    w: &Reader,
    x: &[f32],
    n: usize,
    dims: [usize; 4],
    m1: &[f32],
    m2: &[f32],
    acts: Acts,
    threads: usize,
) -> candle_core::Result<()> {
    let [g, a, b, d] = dims;
    let Acts {
        h1,
        h2,
        h3,
        out,
        norm,
    } = acts;
    gemm_on(
        h1,
        n,
        a,
        Op::n(x, n, g),
        Op::t(w.get(0)?, a, g),
        false,
        threads,
    );
    bias_relu_mask(h1, w.get(1)?, Some(m1));
    gemm_on(
        h2,
        n,
        b,
        Op::n(h1, n, a),
        Op::t(w.get(2)?, b, a),
        false,
        threads,
    );
    bias_relu_mask(h2, w.get(3)?, Some(m2));
    gemm_on(
        h3,
        n,
        d,
        Op::n(h2, n, b),
        Op::t(w.get(4)?, d, b),
        false,
        threads,
    );
    bias_relu_mask(h3, w.get(5)?, None);
    l2_normalize_rows(h3, out, norm, d);
    Ok(())
}

impl Moco {
    /// One training step on `x` = `[view1; view2]` (`n` rows of `G` values, row-major) on
    /// the CPU; returns the loss. Draws from `rng` exactly as [`Moco::step`].
    pub fn step_cpu(
        &mut self,
        x: &[f32],
        n: usize,
        rng: &mut Rng,
        ws: &mut Workspace,
    ) -> candle_core::Result<f64> {
        if !n.is_multiple_of(2) || n == 0 {
            return Err(candle_core::Error::Msg(
                "a MoCo batch holds two views of the same anchors".into(),
            ));
        }
        let half = n / 2;
        let g = self.query.n_genes();
        let (a, b) = self.query.hidden();
        let d = self.query.latent();
        let kq = self.params.queue_size;
        let dims = [g, a, b, d];
        if x.len() != n * g {
            return Err(candle_core::Error::Msg(format!(
                "batch of {} values for {n} x {g}",
                x.len()
            )));
        }
        if let Some(p) = &mut ws.phases {
            p.start();
        }
        ema_update(&self.key.vars(), &self.query.vars(), self.params.momentum)?;
        let p = self.params.dropout;
        let w = &mut *ws;
        mark(&mut w.phases, "ema (key = m key + (1-m) query)");
        for (v, len) in [
            (&mut w.m1q, n * a),
            (&mut w.m2q, n * b),
            (&mut w.m1k, n * a),
            (&mut w.m2k, n * b),
            (&mut w.h1q, n * a),
            (&mut w.h2q, n * b),
            (&mut w.h3q, n * d),
            (&mut w.q, n * d),
            (&mut w.normq, n),
            (&mut w.h1k, n * a),
            (&mut w.h2k, n * b),
            (&mut w.h3k, n * d),
            (&mut w.k, n * d),
            (&mut w.normk, n),
            (&mut w.lpos, n),
            (&mut w.lneg, n * kq),
            (&mut w.dq, n * d),
            (&mut w.dh2, n * b),
            (&mut w.dh1, n * a),
        ] {
            sized(v, len);
        }
        w.losses.resize(n, 0.0);
        for (gv, len) in w.grads.iter_mut().zip([a * g, a, b * a, b, d * b, d]) {
            sized(gv, len);
        }
        // Same draw order as `draw_masks` in the tensor step: query m1, m2, key m1, m2.
        rng.dropout_mask(&mut w.m1q, p);
        rng.dropout_mask(&mut w.m2q, p);
        rng.dropout_mask(&mut w.m1k, p);
        rng.dropout_mask(&mut w.m2k, p);
        mark(&mut w.phases, "buffers, dropout masks");

        let qvars = self.query.vars();
        let kvars = self.key.vars();
        let loss = {
            let kr = Reader::new(&kvars.iter().map(|v| v.as_tensor()).collect::<Vec<_>>());
            let qr = Reader::new(&qvars.iter().map(|v| v.as_tensor()).collect::<Vec<_>>());
            let key_acts = Acts {
                h1: &mut w.h1k,
                h2: &mut w.h2k,
                h3: &mut w.h3k,
                out: &mut w.k,
                norm: &mut w.normk,
            };
            let query_acts = Acts {
                h1: &mut w.h1q,
                h2: &mut w.h2q,
                h3: &mut w.h3q,
                out: &mut w.q,
                norm: &mut w.normq,
            };
            let threads = rayon::current_num_threads();
            if threads > 1 {
                // The two encoders side by side, each on one thread (the same products,
                // so the same bits, as one after the other).
                let (rk, rq) = rayon::join(
                    || forward(&kr, x, n, dims, &w.m1k, &w.m2k, key_acts, 1),
                    || forward(&qr, x, n, dims, &w.m1q, &w.m2q, query_acts, 1),
                );
                rk?;
                rq?;
                mark(&mut w.phases, "forward, both encoders (in parallel)");
            } else {
                forward(&kr, x, n, dims, &w.m1k, &w.m2k, key_acts, 1)?;
                mark(&mut w.phases, "forward, key encoder");
                forward(&qr, x, n, dims, &w.m1q, &w.m2q, query_acts, 1)?;
                mark(&mut w.phases, "forward, query encoder");
            }
            drop(kr);
            // Logits: q of view 1 against k of view 2 and vice versa; negatives = the queue.
            row_dots(&w.q[..half * d], &w.k[half * d..], &mut w.lpos[..half], d);
            row_dots(&w.q[half * d..], &w.k[..half * d], &mut w.lpos[half..], d);
            let queue_r = Reader::new(&[&self.queue]);
            let queue = queue_r.get(0)?;
            gemm(
                &mut w.lneg,
                n,
                kq,
                Op::n(&w.q, n, d),
                Op::t(queue, kq, d),
                false,
            );
            mark(&mut w.phases, "logits q queue^T (512x2048x128)");
            info_nce_rows(
                &mut w.lpos,
                &mut w.lneg,
                self.params.temperature as f32,
                n,
                &mut w.losses,
            );
            let loss = w.losses.iter().sum::<f64>() / n as f64;
            mark(&mut w.phases, "InfoNCE softmax + gradient");
            // dq = dneg * queue + dpos * kpos
            gemm(
                &mut w.dq,
                n,
                d,
                Op::n(&w.lneg, n, kq),
                Op::n(queue, kq, d),
                false,
            );
            drop(queue_r);
            add_scaled_rows(&mut w.dq[..half * d], &w.k[half * d..], &w.lpos[..half], d);
            add_scaled_rows(&mut w.dq[half * d..], &w.k[..half * d], &w.lpos[half..], d);
            // Backward through the query encoder.
            mark(&mut w.phases, "dq = dlogits queue (512x128x2048)");
            l2_relu_backward(&mut w.dq, &w.q, &w.h3q, &w.normq, d);
            let [gw1, gb1, gw2, gb2, gw3, gb3] = &mut w.grads;
            gemm(gw3, d, b, Op::t(&w.dq, n, d), Op::n(&w.h2q, n, b), false);
            col_sums(&w.dq, gb3);
            gemm(
                &mut w.dh2,
                n,
                b,
                Op::n(&w.dq, n, d),
                Op::n(qr.get(4)?, d, b),
                false,
            );
            relu_mask_backward(&mut w.dh2, &w.h2q, &w.m2q);
            gemm(gw2, b, a, Op::t(&w.dh2, n, b), Op::n(&w.h1q, n, a), false);
            col_sums(&w.dh2, gb2);
            gemm(
                &mut w.dh1,
                n,
                a,
                Op::n(&w.dh2, n, b),
                Op::n(qr.get(2)?, b, a),
                false,
            );
            relu_mask_backward(&mut w.dh1, &w.h1q, &w.m1q);
            mark(&mut w.phases, "backward, layers 3 and 2");
            gemm(gw1, a, g, Op::t(&w.dh1, n, a), Op::n(x, n, g), false);
            col_sums(&w.dh1, gb1);
            mark(&mut w.phases, "backward, layer 1 (dW1 500x2000x512)");
            loss
        };
        let grads: Vec<&[f32]> = w.grads.iter().map(|v| v.as_slice()).collect();
        self.opt.step_slices(&grads)?;
        mark(&mut w.phases, "Adam");
        let keys = Tensor::from_slice(&w.k, (n, d), &candle_core::Device::Cpu)?;
        self.enqueue(&keys.narrow(0, 0, half)?)?;
        self.enqueue(&keys.narrow(0, half, half)?)?;
        mark(&mut w.phases, "enqueue keys");
        Ok(loss)
    }
}
