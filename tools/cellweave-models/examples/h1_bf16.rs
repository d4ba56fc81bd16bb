//! Time the first-layer forward product of CLAIRE's step, `h1 = x W1^T` (512 x 2000 times
//! 2000 x 500 by default), in f32 (faer, as the f32 step) and with bf16 operands
//! (kernels::bf16: packing of x and W1 and the product, each timed), on one thread
//! (median CPU time per call).
//!
//! usage: h1_bf16 [--n N] [--k K] [--m M] [--reps R]
use cellweave_models::engine::process_cpu_seconds;
use cellweave_models::kernels::{bf16, gemm_on, Op};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, d: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, k, m, reps) = (
        arg("--n", 512),
        arg("--k", 2000),
        arg("--m", 500),
        arg("--reps", 20),
    );
    let x: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let w: Vec<f32> = (0..m * k)
        .map(|i| ((i * 104_729) % 2001) as f32 / 1e5 - 0.01)
        .collect();
    let mut c = vec![0f32; n * m];
    // The median of the CPU times of `reps` calls (after one untimed): the figure that
    // does not count other processes' time slices on a shared machine.
    let best = |f: &mut dyn FnMut()| -> f64 {
        f();
        let mut t = Vec::new();
        for _ in 0..reps {
            let t0 = process_cpu_seconds();
            f();
            t.push(process_cpu_seconds() - t0);
        }
        t.sort_by(|a, b| a.total_cmp(b));
        t[t.len() / 2]
    };
    let flop = 2.0 * (n * m * k) as f64;
    let f32_s = best(&mut || gemm_on(&mut c, n, m, Op::n(&x, n, k), Op::t(&w, m, k), false, 1));
    let want = c.clone();
    println!("h1 {n} x {k} x {m}, one thread, median CPU time of {reps}");
    println!(
        "f32 faer           {:8.3} ms {:7.1} GFLOP/s",
        f32_s * 1e3,
        flop / f32_s / 1e9
    );
    if !bf16::available() {
        println!("no AVX512_BF16 on this CPU");
        return;
    }
    let (mut xa, mut wb) = (Vec::new(), Vec::new());
    let px = best(&mut || bf16::pack_rows(&x, n, k, &mut xa));
    let pw = best(&mut || bf16::pack_panels(&w, m, k, &mut wb));
    let g = best(&mut || bf16::gemm_nt(&mut c, n, m, k, &xa, &wb, 1));
    println!("bf16 pack x        {:8.3} ms", px * 1e3);
    println!("bf16 pack W1       {:8.3} ms", pw * 1e3);
    println!(
        "bf16 product       {:8.3} ms {:7.1} GFLOP/s",
        g * 1e3,
        flop / g / 1e9
    );
    let worst = c
        .iter()
        .zip(&want)
        .map(|(a, b)| ((a - b).abs() / b.abs().max(1e-3)) as f64)
        .fold(0f64, f64::max);
    println!("largest relative difference bf16 vs f32: {worst:.2e}");
}
