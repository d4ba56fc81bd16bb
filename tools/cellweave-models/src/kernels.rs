//! CPU kernels on raw f32 buffers for the hand-written training steps: matrix products
//! (through faer's gemm) into preallocated buffers, and fused element-wise passes.
//!
//! The fused loops are compiled three times, for AVX-512, for AVX2+FMA (picked at run time)
//! and portable; Rust never contracts `a * b + c` into an FMA and every loop fixes its own
//! summation order, so all copies give the same bits.

use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};

pub mod bf16;
pub mod huge;
pub mod sparse;
pub use sparse::{gemm_sparse_left, SparseLeft};

/// A row-major matrix operand, optionally transposed.
#[derive(Clone, Copy)]
pub struct Op<'a> {
    /// The stored matrix, row-major (at least `rows x cols` values).
    pub data: &'a [f32],
    /// Rows as stored.
    pub rows: usize,
    /// Columns as stored.
    pub cols: usize,
    /// Whether the product reads the transpose (`cols x rows`).
    pub t: bool,
}

impl<'a> Op<'a> {
    /// The stored `rows x cols` matrix as it is.
    pub fn n(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Op {
            data,
            rows,
            cols,
            t: false,
        }
    }
    /// The transpose (`cols x rows`) of the stored `rows x cols` matrix.
    pub fn t(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Op {
            data,
            rows,
            cols,
            t: true,
        }
    }
    fn mat(&self) -> MatRef<'a, f32> {
        let m =
            MatRef::from_row_major_slice(&self.data[..self.rows * self.cols], self.rows, self.cols);
        if self.t {
            m.transpose()
        } else {
            m
        }
    }
}

/// `dst (m x n, row-major) = a * b` (or `+=` with `accumulate`), on the threads of the
/// current rayon pool.
pub fn gemm(dst: &mut [f32], m: usize, n: usize, a: Op, b: Op, accumulate: bool) {
    gemm_on(dst, m, n, a, b, accumulate, rayon::current_num_threads())
}

/// [`gemm`] on at most `threads` threads (1: on the calling thread). The result does not
/// depend on the thread count.
pub fn gemm_on(
    dst: &mut [f32],
    m: usize,
    n: usize,
    a: Op,
    b: Op,
    accumulate: bool,
    threads: usize,
) {
    let par = match threads {
        0 | 1 => Par::Seq,
        t => Par::rayon(t),
    };
    let (a, b) = (a.mat(), b.mat());
    assert!(
        a.nrows() == m && b.ncols() == n && a.ncols() == b.nrows(),
        "gemm: shapes do not match"
    );
    let d = MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n);
    let acc = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    matmul(d, acc, a, b, 1.0f32, par);
}

/// Whether the CPU has AVX2 and FMA (checked once by the standard library, then cached).
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has AVX-512F (with AVX2 and FMA).
#[inline]
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && has_avx2_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The crate's one run-time SIMD dispatch. `dispatch! { pub fn name(args) -> R { body } }`
/// compiles `body` three times: with AVX-512F (16-lane vectors), with AVX2+FMA (each picked
/// at run time when the CPU has it) and portable. Inside the body the constant `FMA` says which copy runs: a kernel that
/// wants fused multiply-adds writes `if FMA { a.mul_add(b, c) } else { a * b + c }`
/// (`mul_add` is only fast with the hardware instruction). Without `mul_add`, Rust never
/// contracts `a * b + c` into an FMA, so both copies give the same bits.
macro_rules! dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        #[inline]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp<const FMA: bool>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { imp::<true>($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { imp::<true>($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            if $crate::kernels::has_avx512() {
                // SAFETY: the CPU has the features enabled for `avx512` (checked just above).
                return unsafe { avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::kernels::has_avx2_fma() {
                // SAFETY: the CPU has the features enabled for `avx2` (checked just above).
                return unsafe { avx2($($arg),*) };
            }
            imp::<false>($($arg),*)
        }
    };
}
pub(crate) use dispatch;

dispatch! {
    /// In place over `z (rows x cols)`: `z = max(z + bias, 0) * mask` (mask of dropout
    /// scales, or `None` for no dropout).
    pub fn bias_relu_mask(z: &mut [f32], bias: &[f32], mask: Option<&[f32]>) {
        let c = bias.len();
        match mask {
            Some(m) => {
                for (zr, mr) in z.chunks_exact_mut(c).zip(m.chunks_exact(c)) {
                    for ((v, &b), &k) in zr.iter_mut().zip(bias).zip(mr) {
                        *v = (*v + b).max(0.0) * k;
                    }
                }
            }
            None => {
                for zr in z.chunks_exact_mut(c) {
                    for (v, &b) in zr.iter_mut().zip(bias) {
                        *v = (*v + b).max(0.0);
                    }
                }
            }
        }
    }
}

dispatch! {
    /// In place over `d`: `d = d * mask` where `h > 0`, else 0 (backward of
    /// `h = relu(z) * mask`; `h > 0` exactly where `z > 0` and the unit was kept).
    pub fn relu_mask_backward(d: &mut [f32], h: &[f32], mask: &[f32]) {
        for ((v, &hv), &m) in d.iter_mut().zip(h).zip(mask) {
            *v = if hv > 0.0 { *v * m } else { 0.0 };
        }
    }
}

dispatch! {
    /// Column sums of `x (rows x cols)` into `out (cols)`, accumulated in row order.
    pub fn col_sums(x: &[f32], out: &mut [f32]) {
        let c = out.len();
        out.fill(0.0);
        for r in x.chunks_exact(c) {
            for (o, &v) in out.iter_mut().zip(r) {
                *o += v;
            }
        }
    }
}

/// `sum a[i] * b[i]` with one accumulator, in index order: the order of CLAIRE's CPU
/// step (kept so that its results stay bit for bit what they were). [`dot`] is the faster
/// 16-lane order, used by LATE's sparse layers.
#[inline(always)]
pub fn dot_in_order(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

dispatch! {
    /// `sum a[i] * b[i]` in 16 interleaved partial sums (fused multiply-adds with AVX2+FMA),
    /// then the tail.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 16];
        let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (x, y) in ca.zip(cb) {
            for l in 0..16 {
                acc[l] = if FMA {
                    x[l].mul_add(y[l], acc[l])
                } else {
                    acc[l] + x[l] * y[l]
                };
            }
        }
        acc.iter().sum::<f32>() + tail
    }
}

#[inline(always)]
fn axpy_body<const FMA: bool>(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = if FMA {
            xi.mul_add(alpha, *yi)
        } else {
            *yi + alpha * xi
        };
    }
}

dispatch! {
    /// `y += alpha * x`.
    pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        axpy_body::<FMA>(alpha, x, y)
    }
}

dispatch! {
    /// `out += sum_t alpha_t * rows_t`, 64 columns at a time so that the partial sums stay
    /// in registers while the terms stream by (one load per multiply-add instead of three
    /// memory operations for repeated `axpy`).
    pub fn sum_rows(out: &mut [f32], terms: &[(f32, &[f32])]) {
        const W: usize = 64;
        let d = out.len();
        let mut start = 0;
        while start + W <= d {
            let mut acc = [0f32; W];
            acc.copy_from_slice(&out[start..start + W]);
            for &(a, r) in terms {
                let r = &r[start..start + W];
                for l in 0..W {
                    acc[l] = if FMA {
                        r[l].mul_add(a, acc[l])
                    } else {
                        acc[l] + a * r[l]
                    };
                }
            }
            out[start..start + W].copy_from_slice(&acc);
            start += W;
        }
        if start < d {
            for &(a, r) in terms {
                axpy_body::<FMA>(a, &r[start..d], &mut out[start..]);
            }
        }
    }
}

/// torch.nn.functional.normalize's eps.
pub const NORM_EPS: f32 = 1e-12;

/// The squared norms `h[r] . h[r]` of the rows `r0 .. r0 + nr` (`nr <= 4`) of `h`, each
/// summed in index order ([`dot_in_order`]), four rows side by side; `a` and `b` are the
/// rows of the two operands (`nr * d` values each).
#[inline(always)]
fn dots4_in_order(a: &[f32], b: &[f32], nr: usize, d: usize) -> [f32; 4] {
    // The start of `Iterator::sum` for f32, so that each sum is `dot_in_order`'s.
    let zero: f32 = std::iter::empty::<f32>().sum();
    let mut acc = [zero; 4];
    if nr == 4 {
        for j in 0..d {
            for (t, p) in acc.iter_mut().enumerate() {
                *p += a[t * d + j] * b[t * d + j];
            }
        }
    } else {
        for (t, p) in acc.iter_mut().take(nr).enumerate() {
            *p = dot_in_order(&a[t * d..(t + 1) * d], &b[t * d..(t + 1) * d]);
        }
    }
    acc
}

dispatch! {
    /// Row-wise L2 normalisation: `out = h / max(|h|, eps)`; `norm` receives the clamped
    /// norms (one per row).
    pub fn l2_normalize_rows(h: &[f32], out: &mut [f32], norm: &mut [f32], d: usize) {
        let rows = norm.len().min(h.len() / d).min(out.len() / d);
        for r0 in (0..rows).step_by(4) {
            let nr = 4.min(rows - r0);
            let hr = &h[r0 * d..(r0 + nr) * d];
            let sq = dots4_in_order(hr, hr, nr, d);
            for (t, &s) in sq.iter().take(nr).enumerate() {
                let nv = s.sqrt().max(NORM_EPS);
                norm[r0 + t] = nv;
                let (or, hr) = (&mut out[(r0 + t) * d..][..d], &hr[t * d..(t + 1) * d]);
                for (o, &v) in or.iter_mut().zip(hr) {
                    *o = v / nv;
                }
            }
        }
    }
}

dispatch! {
    /// Backward of `out = relu(z) / max(|relu(z)|, eps)` (rows of width `d`): turns `dout`
    /// into `dz` in place, given the output `out`, the ReLU output `h` and the clamped norms.
    /// The projections `out . dout` are summed in index order ([`dot_in_order`]), four rows
    /// side by side.
    pub fn l2_relu_backward(dout: &mut [f32], out: &[f32], h: &[f32], norm: &[f32], d: usize) {
        let rows = norm.len().min(dout.len() / d).min(out.len() / d).min(h.len() / d);
        for r0 in (0..rows).step_by(4) {
            let nr = 4.min(rows - r0);
            let (dr, or) = (&dout[r0 * d..(r0 + nr) * d], &out[r0 * d..(r0 + nr) * d]);
            let proj = dots4_in_order(or, dr, nr, d);
            for (t, &p) in proj.iter().take(nr).enumerate() {
                let r = r0 + t;
                let n = norm[r];
                let proj = if n > NORM_EPS { p } else { 0.0 };
                let (dr, or, hr) = (
                    &mut dout[r * d..(r + 1) * d],
                    &out[r * d..(r + 1) * d],
                    &h[r * d..(r + 1) * d],
                );
                for ((g, &o), &hv) in dr.iter_mut().zip(or).zip(hr) {
                    *g = if hv > 0.0 { (*g - o * proj) / n } else { 0.0 };
                }
            }
        }
    }
}

/// `exp(x)` to about 2 ulp for `x <= 88`, branch-free so that it vectorises; returns a
/// tiny positive number below -87.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let kf = x * LOG2E + ROUND;
    let f = kf - ROUND;
    let r = (x - f * LN2_HI) - f * LN2_LO;
    // e^r on |r| <= ln2/2: Taylor to degree 6 (error < 2e-7 relative).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The integer f sits in the low mantissa bits of kf (kf = 1.5 * 2^23 + f): build 2^f
    // with integer ops (no float-to-int conversion, so the loop vectorises).
    let i = kf.to_bits().wrapping_sub(0x4B40_0000);
    p * f32::from_bits(i.wrapping_add(127) << 23)
}

/// Sum in 8 interleaved partial sums (a fixed order that vectorises), then combined.
#[inline(always)]
fn lanes_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in chunks.remainder() {
        s += v;
    }
    s
}

/// Maximum in 8 lanes (exact whatever the order; NaN-free inputs).
#[inline(always)]
pub(crate) fn lanes_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = acc
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for &v in chunks.remainder() {
        m = if v > m { v } else { m };
    }
    m
}

dispatch! {
    /// InfoNCE with label 0, rows of logits `[pos[r], neg[r, ..]] / t`: replaces `neg` by
    /// `d loss / d neg` and `pos` by `d loss / d pos` for the mean loss over `scale_rows`
    /// rows, and adds each row's loss (f64) to `losses`.
    pub fn info_nce_rows(pos: &mut [f32], neg: &mut [f32], t: f32, scale_rows: usize, losses: &mut [f64]) {
        let k = neg.len() / pos.len().max(1);
        let inv_t = 1.0 / t;
        let g = 1.0 / (scale_rows as f32 * t);
        for ((p, nr), loss) in pos.iter_mut().zip(neg.chunks_exact_mut(k)).zip(losses.iter_mut()) {
            let lp = *p * inv_t;
            let m = lanes_max(nr).max(*p) * inv_t;
            let ep = exp_fast(lp - m);
            for v in nr.iter_mut() {
                *v = exp_fast(*v * inv_t - m);
            }
            let s = ep + lanes_sum(nr);
            *loss = (s as f64).ln() + (m - lp) as f64;
            let w = g / s;
            for v in nr.iter_mut() {
                *v *= w;
            }
            *p = (ep / s - 1.0) * g;
        }
    }
}

dispatch! {
    /// `out[r] = dot(a[r], b[r])` for rows of width `d`.
    pub fn row_dots(a: &[f32], b: &[f32], out: &mut [f32], d: usize) {
        for ((ar, br), o) in a.chunks_exact(d).zip(b.chunks_exact(d)).zip(out.iter_mut()) {
            *o = dot_in_order(ar, br);
        }
    }
}

dispatch! {
    /// `out[r] += s[r] * a[r]` for rows of width `d`.
    pub fn add_scaled_rows(out: &mut [f32], a: &[f32], s: &[f32], d: usize) {
        for ((or, ar), &sv) in out.chunks_exact_mut(d).zip(a.chunks_exact(d)).zip(s) {
            for (o, &v) in or.iter_mut().zip(ar) {
                *o += sv * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_fast_is_accurate() {
        let mut worst = 0f64;
        let mut x = -80.0f32;
        while x < 80.0 {
            let rel = ((exp_fast(x) as f64) - (x as f64).exp()).abs() / (x as f64).exp();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert!(exp_fast(-1000.0) >= 0.0 && exp_fast(-1000.0) < 1e-37);
    }

    #[test]
    fn gemm_matches_naive() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.7).cos()).collect(); // stored n x k
        let mut c = vec![0f32; m * n];
        gemm(&mut c, m, n, Op::n(&a, m, k), Op::t(&b, n, k), false);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|l| a[i * k + l] * b[j * k + l]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn info_nce_gradient_matches_finite_differences() {
        let (n, k, t) = (3usize, 4usize, 0.5f32);
        let pos0: Vec<f32> = vec![0.3, -0.2, 0.9];
        let neg0: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5 % 7) as f32 - 3.0) / 4.0)
            .collect();
        let loss = |pos: &[f32], neg: &[f32]| -> f64 {
            let (mut p, mut q) = (pos.to_vec(), neg.to_vec());
            let mut l = vec![0f64; n];
            info_nce_rows(&mut p, &mut q, t, n, &mut l);
            l.iter().sum::<f64>() / n as f64
        };
        let (mut gp, mut gn) = (pos0.clone(), neg0.clone());
        let mut l = vec![0f64; n];
        info_nce_rows(&mut gp, &mut gn, t, n, &mut l);
        let h = 1e-2f32;
        // Central differences of `loss_at` around `base` against the gradient `grad`.
        let check = |name: &str, base: &[f32], grad: &[f32], loss_at: &dyn Fn(&[f32]) -> f64| {
            for i in 0..base.len() {
                let (mut a, mut b) = (base.to_vec(), base.to_vec());
                a[i] += h;
                b[i] -= h;
                let fd = (loss_at(&a) - loss_at(&b)) / (2.0 * h as f64);
                assert!(
                    (fd - grad[i] as f64).abs() < 1e-3,
                    "{name} {i}: {fd} vs {}",
                    grad[i]
                );
            }
        };
        check("pos", &pos0, &gp, &|p| loss(p, &neg0));
        check("neg", &neg0, &gn, &|q| loss(&pos0, q));
    }
}
