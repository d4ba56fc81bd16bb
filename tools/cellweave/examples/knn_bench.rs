//! Exact blocked kNN against the approximate searches (NN-descent, HNSW) at a few sizes, on
//! clustered data like L2-normalised PCs of cells: wall seconds and recall@k. Used by
//! `bench/pairs.sh` and `bench/scale.sh` to set the size at which `auto` switches
//! (`neighbors::auto_method`).
//!
//! usage: cargo run --release -p cellweave --example knn_bench -- [SIZES] [DIMS] [KS] [METHODS]
//!        e.g. knn_bench 5000,20000,50000 30,50 15,90 nndescent,hnsw

use cellweave::numerics::neighbors::{knn_with, l2_normalize_rows, Method, Metric, Search};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::collections::HashSet;
use std::time::Instant;

fn list(arg: Option<String>, default: &[usize]) -> Vec<usize> {
    arg.map(|a| a.split(',').map(|v| v.parse().expect("a number")).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// `n` points in `d` dimensions around 30 centres of unequal spread, rows L2-normalised.
fn clustered(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..30 * d)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let mut x = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = rng.random_range(0..30);
        let spread = 0.3 + 0.4 * (c as f32 / 30.0);
        for j in 0..d {
            let e: f32 = StandardNormal.sample(&mut rng);
            x.push(centres[c * d + j] + spread * e);
        }
    }
    l2_normalize_rows(&mut x, d);
    x
}

/// Share of the exact neighbours found, over all rows.
fn recall(
    exact: &cellweave::numerics::neighbors::Knn,
    approx: &cellweave::numerics::neighbors::Knn,
) -> f64 {
    let n = exact.n();
    let mut hit = 0usize;
    for q in 0..n {
        let truth: HashSet<u32> = exact.row(q).0.iter().copied().collect();
        hit += approx.row(q).0.iter().filter(|j| truth.contains(j)).count();
    }
    hit as f64 / (n * exact.k).max(1) as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let sizes = list(args.next(), &[5_000, 20_000, 50_000]);
    let dims = list(args.next(), &[30, 50]);
    let ks = list(args.next(), &[10]);
    let methods: Vec<Method> = args
        .next()
        .unwrap_or_else(|| "nndescent".into())
        .split(',')
        .map(|m| match m {
            "hnsw" => Method::Hnsw,
            "nndescent" => Method::NnDescent,
            other => panic!("unknown method {other} (hnsw, nndescent)"),
        })
        .collect();
    println!("| cells | dims | k | exact s | method | approx s | recall |");
    println!("|---:|---:|---:|---:|---|---:|---:|");
    for &d in &dims {
        for &n in &sizes {
            let x = clustered(n, d, 1);
            for &k in &ks {
                let t = Instant::now();
                let exact = knn_with(
                    &x,
                    d,
                    k,
                    Metric::Euclidean,
                    false,
                    &Search::new(Method::Exact, 0),
                );
                let te = t.elapsed().as_secs_f64();
                for &m in &methods {
                    let t = Instant::now();
                    let approx = knn_with(&x, d, k, Metric::Euclidean, false, &Search::new(m, 0));
                    let ta = t.elapsed().as_secs_f64();
                    println!(
                        "| {n} | {d} | {k} | {te:.2} | {} | {ta:.2} | {:.4} |",
                        m.name(),
                        recall(&exact, &approx)
                    );
                }
            }
        }
    }
}
