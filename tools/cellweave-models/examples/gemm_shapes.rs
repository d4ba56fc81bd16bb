//! Time the matrix products of one CLAIRE step at the reference shape (diagnostic): CPU
//! time per call (median of 15) and the rate it gives, so that the figures mean something
//! on a loaded machine too. Threads: RAYON_NUM_THREADS.
use cellweave_models::kernels::{gemm, gemm_sparse_left, Op, SparseLeft};

use cellweave_models::engine::process_cpu_seconds;

/// The same product through faer (for comparison with the blocked kernel).
fn faer_gemm(dst: &mut [f32], m: usize, n: usize, a: Op, b: Op) {
    use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};
    fn mat<'a>(o: &Op<'a>) -> MatRef<'a, f32> {
        let x = MatRef::from_row_major_slice(&o.data[..o.rows * o.cols], o.rows, o.cols);
        if o.t {
            x.transpose()
        } else {
            x
        }
    }
    let d = MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n);
    let par = match rayon::current_num_threads() {
        1 => Par::Seq,
        t => Par::rayon(t),
    };
    matmul(d, Accum::Replace, mat(&a), mat(&b), 1.0f32, par);
}

/// `(rows, cols)` of an operand as the product reads it.
fn shape(o: &Op) -> (usize, usize) {
    if o.t {
        (o.cols, o.rows)
    } else {
        (o.rows, o.cols)
    }
}

fn main() {
    let (n, g, a, b, d, k) = (512usize, 2000usize, 500usize, 250usize, 128usize, 2048usize);
    let v = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.3)
            .collect()
    };
    let (x, w1, w2, w3, q, queue) = (v(n * g), v(a * g), v(b * a), v(d * b), v(n * d), v(k * d));
    let (h1, h2, lneg) = (v(n * a), v(n * b), v(n * k));
    // The gradients behind ReLU and dropout as the step has them: about 26% (dz1) and 33%
    // (dz2) non-zeros, scattered.
    let sparse = |len: usize, pct: u64| -> Vec<f32> {
        (0..len)
            .map(|i| {
                let hsh = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                if hsh % 100 < pct {
                    (hsh % 1000) as f32 / 1000.0 - 0.5
                } else {
                    0.0
                }
            })
            .collect()
    };
    let (dz1, dz2) = (sparse(n * a, 26), sparse(n * b, 33));
    // The hidden layers (as many non-zeros as the gradients) and the weights transposed.
    let (w2t, w3t) = (v(a * b), v(b * d));
    // (name, calls per step, left and right operands, through faer instead of the kernel)
    #[rustfmt::skip]
    let products = [
        ("h1 = x w1^T", 2.0, Op::n(&x, n, g), Op::t(&w1, a, g), false),
        ("h2 = h1 w2^T", 2.0, Op::n(&h1, n, a), Op::t(&w2, b, a), false),
        ("h3 = h2 w3^T", 2.0, Op::n(&h2, n, b), Op::t(&w3, d, b), false),
        ("lneg = q queue^T", 1.0, Op::n(&q, n, d), Op::t(&queue, k, d), false),
        ("dq = dneg queue", 1.0, Op::n(&lneg, n, k), Op::n(&queue, k, d), false),
        ("dw3 = dz3^T h2", 1.0, Op::t(&q, n, d), Op::n(&h2, n, b), false),
        ("dh2 = dz3 w3", 1.0, Op::n(&q, n, d), Op::n(&w3, d, b), false),
        ("dw2 = dz2^T h1", 1.0, Op::t(&h2, n, b), Op::n(&h1, n, a), false),
        ("dh1 = dz2 w2", 1.0, Op::n(&h2, n, b), Op::n(&w2, b, a), false),
        ("dw1 = dz1^T x", 1.0, Op::t(&h1, n, a), Op::n(&x, n, g), false),
        ("dw1 (dz1 26% non-zero)", 0.0, Op::t(&dz1, n, a), Op::n(&x, n, g), false),
        ("sparse dw1 = dz1^T x", 0.0, Op::t(&dz1, n, a), Op::n(&x, n, g), true),
        ("dw2 (dz2 33% non-zero)", 0.0, Op::t(&dz2, n, b), Op::n(&h1, n, a), false),
        ("sparse dw2 = dz2^T h1", 0.0, Op::t(&dz2, n, b), Op::n(&h1, n, a), true),
        ("sparse h2 = h1 w2^T", 0.0, Op::n(&dz1, n, a), Op::n(&w2t, a, b), true),
        ("sparse h3 = h2 w3^T", 0.0, Op::n(&dz2, n, b), Op::n(&w3t, b, d), true),
        ("dh1 (dz2 33% non-zero)", 0.0, Op::n(&dz2, n, b), Op::n(&w2, b, a), false),
        ("sparse dh1 = dz2 w2", 0.0, Op::n(&dz2, n, b), Op::n(&w2, b, a), true),
        ("faer h1^T = w1 x^T", 0.0, Op::n(&w1, a, g), Op::t(&x, n, g), true),
        ("faer lneg^T = queue q^T", 0.0, Op::n(&queue, k, d), Op::t(&q, n, d), true),
        ("faer dq^T = queue^T dneg^T", 0.0, Op::t(&queue, k, d), Op::t(&lneg, n, k), true),
        ("faer h1 = x w1^T", 0.0, Op::n(&x, n, g), Op::t(&w1, a, g), true),
        ("faer dw1 = dz1^T x", 0.0, Op::t(&h1, n, a), Op::n(&x, n, g), true),
        ("faer lneg = q queue^T", 0.0, Op::n(&q, n, d), Op::t(&queue, k, d), true),
        ("faer dq = dneg queue", 0.0, Op::n(&lneg, n, k), Op::n(&queue, k, d), true),
    ];
    let mut out = vec![0f32; n * k.max(g)];
    let mut total = 0.0;
    let mut scratch = SparseLeft::default();
    for (name, times, left, right, via_faer) in products {
        let ((m, kk), (_, nn)) = (shape(&left), shape(&right));
        let mut f = || {
            if name.starts_with("sparse") {
                gemm_sparse_left(
                    &mut out,
                    m,
                    nn,
                    left,
                    right,
                    rayon::current_num_threads(),
                    &mut scratch,
                )
            } else if via_faer {
                faer_gemm(&mut out, m, nn, left, right)
            } else {
                gemm(&mut out, m, nn, left, right, false)
            }
        };
        f();
        let mut ts: Vec<f64> = (0..15)
            .map(|_| {
                let t0 = process_cpu_seconds();
                f();
                process_cpu_seconds() - t0
            })
            .collect();
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let flops = 2.0 * (m * nn * kk) as f64;
        total += ts[7] * times;
        println!(
            "{name:<26} {m:>4} x {nn:>4} x {kk:>4}  cpu median {:>7.2} ms  min {:>7.2} ms  {:>6.1} GFLOP/s  x{times}",
            ts[7] * 1e3,
            ts[0] * 1e3,
            flops / ts[7] * 1e-9
        );
    }
    println!("all products of one step: {:.1} ms CPU", total * 1e3);
}
