use candle_core::{Device, Tensor};
use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};
use std::time::Instant;

fn time<F: FnMut()>(name: &str, flops: f64, mut f: F) {
    for _ in 0..3 { f(); }
    let n = 20;
    let t = Instant::now();
    for _ in 0..n { f(); }
    let s = t.elapsed().as_secs_f64() / n as f64;
    println!("{name:40} {:8.2} ms {:6.1} GFLOP/s", s * 1e3, flops / s / 1e9);
}

fn main() {
    let (b, g, h) = (512usize, 2000usize, 500usize);
    let x: Vec<f32> = (0..b * g).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let w: Vec<f32> = (0..h * g).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
    let dz: Vec<f32> = (0..b * h).map(|i| ((i * 31) % 100) as f32 / 100.0 - 0.5).collect();
    let fl = 2.0 * (b * g * h) as f64;
    let dev = Device::Cpu;
    let xt = Tensor::from_slice(&x, (b, g), &dev).unwrap();
    let wt = Tensor::from_slice(&w, (h, g), &dev).unwrap();
    let dzt = Tensor::from_slice(&dz, (b, h), &dev).unwrap();
    time("candle Z = X W^T", fl, || { let _ = xt.matmul(&wt.t().unwrap()).unwrap(); });
    time("candle dW = dZ^T X", fl, || { let _ = dzt.t().unwrap().matmul(&xt).unwrap(); });
    let mut z = vec![0f32; b * h];
    let mut dw = vec![0f32; h * g];
    let par = Par::Seq;
    time("faer Z = X W^T", fl, || {
        let xm = MatRef::from_row_major_slice(&x, b, g);
        let wm = MatRef::from_row_major_slice(&w, h, g);
        let zm = MatMut::from_row_major_slice_mut(&mut z, b, h);
        matmul(zm, Accum::Replace, xm, wm.transpose(), 1.0f32, par);
    });
    time("faer dW = dZ^T X", fl, || {
        let xm = MatRef::from_row_major_slice(&x, b, g);
        let dzm = MatRef::from_row_major_slice(&dz, b, h);
        let dwm = MatMut::from_row_major_slice_mut(&mut dw, h, g);
        matmul(dwm, Accum::Replace, dzm.transpose(), xm, 1.0f32, par);
    });
    // W^T stored explicitly (g x h row-major)
    let wtr: Vec<f32> = { let mut v = vec![0f32; g * h]; for o in 0..h { for c in 0..g { v[c * h + o] = w[o * g + c]; } } v };
    time("faer Z = X WT (WT row-major)", fl, || {
        let xm = MatRef::from_row_major_slice(&x, b, g);
        let wm = MatRef::from_row_major_slice(&wtr, g, h);
        let zm = MatMut::from_row_major_slice_mut(&mut z, b, h);
        matmul(zm, Accum::Replace, xm, wm, 1.0f32, par);
    });
    time("faer Z^T = W X^T (col-major out)", fl, || {
        let xm = MatRef::from_row_major_slice(&x, b, g);
        let wm = MatRef::from_row_major_slice(&w, h, g);
        let zm = MatMut::from_column_major_slice_mut(&mut z, h, b);
        matmul(zm, Accum::Replace, wm, xm.transpose(), 1.0f32, par);
    });
}
