//! Time one CLAIRE training step (256 cells x 2000 genes by default): the CPU fast path
//! (`Moco::step_cpu`) and the candle-ops path (`Moco::step`, the one CUDA uses).
//! Run through bench/train.sh (RAYON_NUM_THREADS=1 for the one-core figure).
use candle_core::{Device, Tensor};
use cellweave_models::claire::cpu_step::Workspace;
use cellweave_models::claire::encoder::Encoder;
use cellweave_models::claire::moco::{Moco, MocoParams};
use cellweave_models::optim::AdamConfig;
use cellweave_models::rng::Rng;
use std::time::Instant;

/// (median, min, mean) of step times.
fn stats(t: &mut [f64]) -> (f64, f64, f64) {
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (t[t.len() / 2], t[0], t.iter().sum::<f64>() / t.len() as f64)
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, d: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (g, b, steps) = (
        arg("--genes", 2000),
        arg("--batch", 256),
        arg("--steps", 50),
    );
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    let adam = AdamConfig {
        lr: 1e-4,
        weight_decay: 1e-5,
        ..Default::default()
    };
    let new_model = |rng: &mut Rng| -> candle_core::Result<Moco> {
        Moco::new(
            Encoder::init(g, 128, rng, &dev)?,
            MocoParams::default(),
            adam,
        )
    };
    // Random non-negative dense inputs, as the PyTorch reference bench (torch.rand).
    let xs: Vec<f32> = (0..2 * b * g).map(|_| rng.f32()).collect();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!("CLAIRE training step: batch {b} (2 x {b} views), {g} genes, latent 128, queue 2048; threads {threads}");

    let mut fast = new_model(&mut rng)?;
    let mut ws = Workspace::default();
    for _ in 0..5 {
        fast.step_cpu(&xs, 2 * b, &mut rng, &mut ws)?;
    }
    let mut loss_fast = 0.0;
    let mut times = Vec::new();
    for _ in 0..steps {
        let t0 = Instant::now();
        loss_fast = fast.step_cpu(&xs, 2 * b, &mut rng, &mut ws)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let fast_s = stats(&mut times);

    if args.iter().any(|a| a == "--fast-only") {
        println!(
            "step_cpu: median {:.4} s, min {:.4} s, loss {loss_fast:.4}",
            fast_s.0, fast_s.1
        );
        return Ok(());
    }
    let mut slow = new_model(&mut rng)?;
    let x = Tensor::from_slice(&xs, (2 * b, g), &dev)?;
    for _ in 0..3 {
        slow.step(&x, &mut rng)?;
    }
    let slow_steps = (steps / 2).max(5);
    let mut loss_slow = 0.0;
    let mut times = Vec::new();
    for _ in 0..slow_steps {
        let t0 = Instant::now();
        loss_slow = slow.step(&x, &mut rng)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let slow_s = stats(&mut times);

    let torch = 0.134;
    println!(
        "{:<42}{:>10}{:>10}{:>10}{:>12}",
        "implementation", "median s", "min s", "mean s", "vs PyTorch"
    );
    println!(
        "{:<42}{:>10.4}{:>10}{:>10}{:>11.2}x",
        "CLAIRE PyTorch 1.13.1 (reference figure)", torch, "-", "-", 1.0
    );
    for (name, (med, min, mean)) in [
        ("cellweave step_cpu (fused, CPU)", fast_s),
        ("cellweave step (candle ops, any device)", slow_s),
    ] {
        println!(
            "{name:<42}{med:>10.4}{min:>10.4}{mean:>10.4}{:>11.2}x",
            torch / med
        );
    }
    println!("last losses: fast {loss_fast:.4}, candle ops {loss_slow:.4}");
    Ok(())
}
