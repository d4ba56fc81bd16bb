//! Time the matrix products of one CLAIRE step (diagnostic).
use cellweave_models::kernels::{gemm, Op};
use std::time::Instant;

fn main() {
    let (n, g, a, b, d, k) = (512usize, 2000usize, 500usize, 250usize, 128usize, 2048usize);
    let v = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.3)
            .collect()
    };
    let (x, w1, w2, w3, q, queue) = (v(n * g), v(a * g), v(b * a), v(d * b), v(n * d), v(k * d));
    let (h1, h2, lneg) = (v(n * a), v(n * b), v(n * k));
    let mut out = vec![0f32; n * k.max(g)];
    let mut big = vec![0f32; a * g];
    let t = |name: &str, f: &mut dyn FnMut()| {
        f();
        let mut ts: Vec<f64> = (0..15)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed().as_secs_f64()
            })
            .collect();
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{name:<34} median {:>7.2} ms  min {:>7.2} ms",
            ts[7] * 1e3,
            ts[0] * 1e3
        );
    };
    t("h1 = x w1^T (x2: q and k)", &mut || {
        gemm(&mut out, n, a, Op::n(&x, n, g), Op::t(&w1, a, g), false)
    });
    t("h2 = h1 w2^T (x2)", &mut || {
        gemm(&mut out, n, b, Op::n(&h1, n, a), Op::t(&w2, b, a), false)
    });
    t("h3 = h2 w3^T (x2)", &mut || {
        gemm(&mut out, n, d, Op::n(&h2, n, b), Op::t(&w3, d, b), false)
    });
    t("lneg = q queue^T", &mut || {
        gemm(&mut out, n, k, Op::n(&q, n, d), Op::t(&queue, k, d), false)
    });
    t("dq = dneg queue", &mut || {
        gemm(
            &mut out,
            n,
            d,
            Op::n(&lneg, n, k),
            Op::n(&queue, k, d),
            false,
        )
    });
    t("dw3 = dz3^T h2", &mut || {
        gemm(&mut out, d, b, Op::t(&q, n, d), Op::n(&h2, n, b), false)
    });
    t("dh2 = dz3 w3", &mut || {
        gemm(&mut out, n, b, Op::n(&q, n, d), Op::n(&w3, d, b), false)
    });
    t("dw2 = dz2^T h1", &mut || {
        gemm(&mut out, b, a, Op::t(&h2, n, b), Op::n(&h1, n, a), false)
    });
    t("dh1 = dz2 w2", &mut || {
        gemm(&mut out, n, a, Op::n(&h2, n, b), Op::n(&w2, b, a), false)
    });
    t("dw1 = dz1^T x", &mut || {
        gemm(&mut big, a, g, Op::t(&h1, n, a), Op::n(&x, n, g), false)
    });
    t("dw1^T = x^T dz1 (col-major dst)", &mut || {
        use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};
        let d = MatMut::from_column_major_slice_mut(&mut big, g, a);
        let xt = MatRef::from_row_major_slice(&x, n, g).transpose();
        let dz = MatRef::from_row_major_slice(&h1, n, a);
        matmul(d, Accum::Replace, xt, dz, 1.0f32, Par::Seq);
    });
    t("h1^T = w1 x^T (col-major dst)", &mut || {
        use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};
        let d = MatMut::from_column_major_slice_mut(&mut out[..n * a], a, n);
        let w = MatRef::from_row_major_slice(&w1, a, g);
        let xt = MatRef::from_row_major_slice(&x, n, g).transpose();
        matmul(d, Accum::Replace, w, xt, 1.0f32, Par::Seq);
    });
}
