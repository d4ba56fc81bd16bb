//! Time CLAIRE's training step at the reference shape (256 anchors, 2 x 256 views, 2,000
//! genes, encoder 2000-500-250-128, queue 2,048) on random non-negative dense inputs, as
//! the PyTorch peer (`claire_step_bench.py`) does: the fused CPU step (`Moco::step_cpu`)
//! and the candle-ops step (`Moco::step`, the one a CUDA device runs).
//!
//! usage: claire_step [--steps N] [--warmup W] [--genes G] [--batch B] [--fast-only]
//!                    [--profile]  (CPU time per phase of the fused step)
//!                    [--precision auto|f32]  (the fused step's first layer, as
//!                                 `cellweave-train --precision`; default auto)
//!                    [--also-f32]  (time the fused step with --precision f32 as well)
//! Threads: RAYON_NUM_THREADS. Prints, per implementation, the wall time per step (median
//! and mean over the steps), the CPU time per step (all threads; on a shared machine the
//! figure that does not count other processes) and the last loss, plus one
//! machine-readable `result` line each for bench/train.sh.
use candle_core::{Device, Tensor};
use cellweave_models::claire::cpu_step::{Precision, Workspace};
use cellweave_models::claire::encoder::Encoder;
use cellweave_models::claire::moco::{Moco, MocoParams};
use cellweave_models::optim::AdamConfig;
use cellweave_models::rng::Rng;
use std::time::Instant;

use cellweave_models::engine::process_cpu_seconds;

/// Step times of one implementation.
struct Timed {
    wall: Vec<f64>,
    cpu_total: f64,
    loss: f64,
}

impl Timed {
    fn median(&self) -> f64 {
        let mut t = self.wall.clone();
        t.sort_by(|a, b| a.total_cmp(b));
        t[t.len() / 2]
    }
    fn mean(&self) -> f64 {
        self.wall.iter().sum::<f64>() / self.wall.len() as f64
    }
    fn cpu(&self) -> f64 {
        self.cpu_total / self.wall.len() as f64
    }
}

/// `warmup` untimed steps, then `steps` timed ones.
fn time_steps(
    warmup: usize,
    steps: usize,
    step: &mut dyn FnMut() -> candle_core::Result<f64>,
) -> candle_core::Result<Timed> {
    for _ in 0..warmup {
        step()?;
    }
    let mut wall = Vec::with_capacity(steps);
    let mut loss = 0.0;
    let c0 = process_cpu_seconds();
    for _ in 0..steps {
        let t0 = Instant::now();
        loss = step()?;
        wall.push(t0.elapsed().as_secs_f64());
    }
    let cpu_total = process_cpu_seconds() - c0;
    Ok(Timed {
        wall,
        cpu_total,
        loss,
    })
}

/// Large buffers on transparent huge pages, as in `cellweave-train`.
#[global_allocator]
static ALLOC: cellweave_models::kernels::huge::HugePageAlloc =
    cellweave_models::kernels::huge::HugePageAlloc;

fn main() -> candle_core::Result<()> {
    // As cellweave-train does for CLAIRE on the CPU.
    cellweave_models::kernels::huge::enable();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, d: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (g, b, steps, warmup) = (
        arg("--genes", 2000),
        arg("--batch", 256),
        arg("--steps", 50),
        arg("--warmup", 5),
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
    let precision = match args.iter().position(|a| a == "--precision") {
        None => Precision::Auto,
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("auto") => Precision::Auto,
            Some("f32") => Precision::F32,
            other => {
                return Err(candle_core::Error::Msg(format!(
                    "--precision: expected auto or f32, got {other:?}"
                )))
            }
        },
    };
    println!(
        "CLAIRE training step: batch {b} (2 x {b} views), {g} genes, latent 128, queue 2048; threads {threads}; fused step's first layer: {}",
        precision.resolved()
    );

    let mut fast = new_model(&mut rng)?;
    let mut ws = Workspace::with_precision(precision);
    let profile = args.iter().any(|a| a == "--profile");
    if profile {
        ws.phases = Some(Default::default());
    }
    let mut results = vec![(
        "step_cpu",
        if precision.bf16_first_layer() {
            "cellweave step_cpu (bf16 first layer)"
        } else {
            "cellweave step_cpu (fused, f32)"
        },
        time_steps(warmup, steps, &mut || {
            fast.step_cpu(&xs, 2 * b, &mut rng, &mut ws)
        })?,
    )];
    if let Some(p) = &ws.phases {
        let total: f64 = p.seconds.iter().map(|(_, s)| s).sum();
        println!("profile of step_cpu: CPU ms per step (warm-up steps included)");
        for (name, s) in &p.seconds {
            let per = s / (warmup + steps) as f64;
            println!(
                "  {name:<40}{:>8.2} ms {:>5.1}%",
                per * 1e3,
                100.0 * s / total
            );
        }
    }
    if args.iter().any(|a| a == "--also-f32") {
        let mut f32_model = new_model(&mut rng)?;
        let mut ws = Workspace::with_precision(Precision::F32);
        let timed = time_steps(warmup, steps, &mut || {
            f32_model.step_cpu(&xs, 2 * b, &mut rng, &mut ws)
        })?;
        results.push(("step_cpu_f32", "cellweave step_cpu, --precision f32", timed));
    }
    if !args.iter().any(|a| a == "--fast-only") {
        let mut slow = new_model(&mut rng)?;
        let x = Tensor::from_slice(&xs, (2 * b, g), &dev)?;
        let timed = time_steps(warmup.min(3), (steps / 2).max(5), &mut || {
            slow.step(&x, &mut rng)
        })?;
        results.push(("step_ops", "cellweave step (candle ops, any device)", timed));
    }
    println!(
        "{:<42}{:>12}{:>12}{:>12}{:>9}",
        "implementation", "median s", "mean s", "cpu s", "loss"
    );
    for (_, name, t) in &results {
        println!(
            "{name:<42}{:>12.4}{:>12.4}{:>12.4}{:>9.4}",
            t.median(),
            t.mean(),
            t.cpu(),
            t.loss
        );
    }
    for (key, _, t) in &results {
        println!(
            "result\t{key}\tthreads={threads}\tsteps={}\tmedian_s={:.6}\tmean_s={:.6}\tcpu_s={:.6}\tloss={:.6}",
            t.wall.len(),
            t.median(),
            t.mean(),
            t.cpu(),
            t.loss
        );
    }
    Ok(())
}
