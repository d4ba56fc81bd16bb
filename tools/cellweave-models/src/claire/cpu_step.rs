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
    add_scaled_rows, bf16, bias_relu_mask, col_sums, gemm, gemm_on, gemm_sparse_left,
    info_nce_rows, l2_normalize_rows, l2_relu_backward, relu_mask_backward, row_dots, Op,
    SparseLeft,
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

/// The arithmetic of the fused CPU step's first-layer forward product `x W1^T` (the
/// largest product of the step; everything else is f32 in every case). `cellweave-train`
/// defaults to `Auto`, a library [`Workspace`] to `F32`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 operands (x and W1 rounded to nearest even) with f32 sums where the CPU has
    /// AVX512_BF16, else f32
    Auto,
    /// f32 throughout
    #[default]
    F32,
}

impl Precision {
    /// Whether the first-layer forward product runs on bf16 operands on this CPU.
    pub fn bf16_first_layer(self) -> bool {
        self == Precision::Auto && bf16::available()
    }
    /// What the step computes in, on this CPU: `bf16-first-layer` or `f32`.
    pub fn resolved(self) -> &'static str {
        if self.bf16_first_layer() {
            "bf16-first-layer"
        } else {
            "f32"
        }
    }
}

/// Preallocated buffers of one step shape.
#[derive(Default)]
pub struct Workspace {
    /// The first layer's forward arithmetic; the default workspace computes in
    /// [`Precision::F32`] (the trainer sets `--precision`, by default `auto`).
    pub precision: Precision,
    /// The batch rounded to bf16 pairs, when the first layer runs on bf16.
    xb: Vec<u32>,
    query: Side,
    key: Side,
    lpos: Vec<f32>,
    lneg: Vec<f32>,
    losses: Vec<f64>,
    dq: Vec<f32>,
    dh2: Vec<f32>,
    dh1: Vec<f32>,
    grads: [Vec<f32>; 6],
    /// The non-zeros of the gradients behind ReLU and dropout, for the backward products.
    sparse: SparseLeft,
    /// CPU time per phase of the step, accumulated over steps when set (profiling).
    pub phases: Option<Phases>,
}

impl Workspace {
    /// An empty workspace whose first layer computes in `precision`.
    pub fn with_precision(precision: Precision) -> Self {
        Workspace {
            precision,
            ..Default::default()
        }
    }
}

/// One encoder's dropout masks and activations for a batch of `n` rows.
#[derive(Default)]
struct Side {
    /// Dropout multipliers of the first and second hidden layers (`n x a`, `n x b`).
    m: [Vec<f32>; 2],
    /// Layer outputs after ReLU (and dropout): `n x a`, `n x b`, `n x d`.
    h: [Vec<f32>; 3],
    /// The L2-normalised output (`n x d`) and the row norms (`n`).
    out: Vec<f32>,
    norm: Vec<f32>,
    /// The non-zeros of the hidden layers, for the products that read them.
    sparse: SparseLeft,
    /// `W1` rounded to bf16 in panels, when the first layer runs on bf16.
    w1b: Vec<u32>,
}

impl Side {
    /// Size the buffers for `n` rows of an encoder of widths `[g, a, b, d]`.
    fn size(&mut self, n: usize, [_, a, b, d]: [usize; 4]) {
        let [m1, m2] = &mut self.m;
        let [h1, h2, h3] = &mut self.h;
        for (v, len) in [
            (m1, n * a),
            (m2, n * b),
            (h1, n * a),
            (h2, n * b),
            (h3, n * d),
            (&mut self.out, n * d),
            (&mut self.norm, n),
        ] {
            sized(v, len);
        }
    }
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

/// Forward of one encoder (weights `w` = [w1, b1, w2, b2, w3, b3]) with the dropout masks
/// of `s`, into its activations; its products on `threads` threads. Layer `l`:
/// `h[l] = relu(input w^T + bias)`, times the mask `m[l]` below the last layer. The
/// hidden layers are mostly zeros (ReLU and dropout): the products of the second and third
/// layers read only their non-zeros. With `xb` (the batch packed by [`bf16::pack_rows`]),
/// the first product runs on bf16 operands. `ph`: the profile of the step, when it is taken.
#[allow(clippy::too_many_arguments)]
fn forward(
    w: &Reader,
    x: &[f32],
    xb: Option<&[u32]>,
    n: usize,
    dims: [usize; 4],
    s: &mut Side,
    threads: usize,
    ph: &mut Option<Phases>,
) -> candle_core::Result<()> {
    const PRODUCT: [&str; 3] = [
        "forward h1 = x W1^T (both encoders)",
        "forward h2 = h1 W2^T (both, sparse)",
        "forward h3 = h2 W3^T (both, sparse)",
    ];
    const REST: &str = "forward bias, ReLU, dropout, normalise";
    for l in 0..3 {
        let (below, rest) = s.h.split_at_mut(l);
        let input = if l == 0 { x } else { &below[l - 1] };
        let (din, dout) = (dims[l], dims[l + 1]);
        let (a, b) = (Op::n(input, n, din), Op::t(w.get(2 * l)?, dout, din));
        match (l, xb) {
            (0, Some(xb)) => {
                bf16::pack_panels(w.get(0)?, dout, din, &mut s.w1b);
                bf16::gemm_nt(&mut rest[0], n, dout, din, xb, &s.w1b, threads);
            }
            (0, None) => gemm_on(&mut rest[0], n, dout, a, b, false, threads),
            _ => gemm_sparse_left(&mut rest[0], n, dout, a, b, threads, &mut s.sparse),
        }
        mark(ph, PRODUCT[l]);
        bias_relu_mask(
            &mut rest[0],
            w.get(2 * l + 1)?,
            s.m.get(l).map(Vec::as_slice),
        );
        mark(ph, REST);
    }
    l2_normalize_rows(&s.h[2], &mut s.out, &mut s.norm, dims[3]);
    mark(ph, REST);
    Ok(())
}

/// The gradients of one layer's weights (`gw`, `[dout, din]`) and bias (`gb`) from the
/// gradient `dz` (`n x dout`) at its pre-activation and its `input` (`n x din`). `dz` is
/// mostly zeros (ReLU and dropout): the product reads only its non-zeros.
fn weight_grads(gw: &mut [f32], gb: &mut [f32], dz: Op, input: Op, sparse: &mut SparseLeft) {
    let dz_t = Op::t(dz.data, dz.rows, dz.cols);
    let threads = rayon::current_num_threads();
    gemm_sparse_left(gw, dz.cols, input.cols, dz_t, input, threads, sparse);
    col_sums(dz.data, gb);
}

/// The gradient `dh` (`n x din`) at the pre-activation of the layer below from `dz`
/// (`n x dout`) through the weights `w` (`[dout, din]`), the ReLU of its output `h` and
/// its dropout `mask`. Reads only the non-zeros of `dz`.
#[allow(clippy::too_many_arguments)]
fn input_grad(
    dh: &mut [f32],
    dz: &[f32],
    w: &[f32],
    n: usize,
    [din, dout]: [usize; 2],
    h: &[f32],
    mask: &[f32],
    sparse: &mut SparseLeft,
) {
    let threads = rayon::current_num_threads();
    let (a, b) = (Op::n(dz, n, dout), Op::n(w, dout, din));
    gemm_sparse_left(dh, n, din, a, b, threads, sparse);
    relu_mask_backward(dh, h, mask);
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
        w.query.size(n, dims);
        w.key.size(n, dims);
        for (v, len) in [
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
        for m in w.query.m.iter_mut().chain(&mut w.key.m) {
            rng.dropout_mask(m, p);
        }
        mark(&mut w.phases, "buffers, dropout masks");
        let bf16_first = w.precision.bf16_first_layer();
        if bf16_first {
            bf16::pack_rows(x, n, g, &mut w.xb);
            mark(&mut w.phases, "x to bf16 (first layer)");
        }

        let qvars = self.query.vars();
        let kvars = self.key.vars();
        let loss = {
            let kr = Reader::new(&kvars.iter().map(|v| v.as_tensor()).collect::<Vec<_>>());
            let qr = Reader::new(&qvars.iter().map(|v| v.as_tensor()).collect::<Vec<_>>());
            let threads = rayon::current_num_threads();
            let xb = bf16_first.then_some(w.xb.as_slice());
            if threads > 1 {
                // The two encoders side by side, each on one thread (the same products,
                // so the same bits, as one after the other).
                let (rk, rq) = rayon::join(
                    || forward(&kr, x, xb, n, dims, &mut w.key, 1, &mut None),
                    || forward(&qr, x, xb, n, dims, &mut w.query, 1, &mut None),
                );
                rk?;
                rq?;
                mark(&mut w.phases, "forward, both encoders (in parallel)");
            } else {
                // Profiled by product (both encoders together).
                forward(&kr, x, xb, n, dims, &mut w.key, 1, &mut w.phases)?;
                forward(&qr, x, xb, n, dims, &mut w.query, 1, &mut w.phases)?;
            }
            drop(kr);
            let (q, k) = (&w.query.out, &w.key.out);
            // Logits: q of view 1 against k of view 2 and vice versa; negatives = the queue.
            row_dots(&q[..half * d], &k[half * d..], &mut w.lpos[..half], d);
            row_dots(&q[half * d..], &k[..half * d], &mut w.lpos[half..], d);
            let queue_r = Reader::new(&[&self.queue]);
            let queue = queue_r.get(0)?;
            gemm(
                &mut w.lneg,
                n,
                kq,
                Op::n(q, n, d),
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
            add_scaled_rows(&mut w.dq[..half * d], &k[half * d..], &w.lpos[..half], d);
            add_scaled_rows(&mut w.dq[half * d..], &k[..half * d], &w.lpos[half..], d);
            // Backward through the query encoder.
            mark(&mut w.phases, "dq = dlogits queue (512x128x2048)");
            let sq = &w.query;
            let ([h1, h2, h3], [m1, m2]) = (&sq.h, &sq.m);
            l2_relu_backward(&mut w.dq, &sq.out, h3, &sq.norm, d);
            let [gw1, gb1, gw2, gb2, gw3, gb3] = &mut w.grads;
            let sp = &mut w.sparse;
            let ph = &mut w.phases;
            mark(ph, "backward, normalisation");
            weight_grads(gw3, gb3, Op::n(&w.dq, n, d), Op::n(h2, n, b), sp);
            mark(ph, "backward, dW3 (dense)");
            input_grad(&mut w.dh2, &w.dq, qr.get(4)?, n, [b, d], h2, m2, sp);
            mark(ph, "backward, dh2 (dense)");
            weight_grads(gw2, gb2, Op::n(&w.dh2, n, b), Op::n(h1, n, a), sp);
            mark(ph, "backward, dW2 (sparse)");
            input_grad(&mut w.dh1, &w.dh2, qr.get(2)?, n, [a, b], h1, m1, sp);
            mark(ph, "backward, dh1 (sparse)");
            weight_grads(gw1, gb1, Op::n(&w.dh1, n, a), Op::n(x, n, g), sp);
            mark(ph, "backward, dW1 (sparse, 500x2000x512)");
            loss
        };
        let grads: Vec<&[f32]> = w.grads.iter().map(|v| v.as_slice()).collect();
        self.opt.step_slices(&grads)?;
        mark(&mut w.phases, "Adam");
        let keys = Tensor::from_slice(&w.key.out, (n, d), &candle_core::Device::Cpu)?;
        self.enqueue(&keys.narrow(0, 0, half)?)?;
        self.enqueue(&keys.narrow(0, half, half)?)?;
        mark(&mut w.phases, "enqueue keys");
        Ok(loss)
    }
}
