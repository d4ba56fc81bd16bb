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

/// CPU seconds (user + system) this process has used so far, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// `f()`, its wall-clock seconds and the CPU seconds the process used meanwhile.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (t, c) = (Instant::now(), cpu_seconds());
    let out = f();
    (out, t.elapsed().as_secs_f64(), cpu_seconds() - c)
}

/// `n` points of one Gaussian whose spread decays over the dimensions (sd of dimension `j`
/// is `1 / sqrt(1 + j)`, as the variance of principal components falls): no cluster
/// structure to exploit, the hard case for partition-based search.
fn spectrum(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut x = Vec::with_capacity(n * d);
    for _ in 0..n {
        for j in 0..d {
            let e: f32 = StandardNormal.sample(&mut rng);
            x.push(e / (1.0 + j as f32).sqrt());
        }
    }
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
    let spec = args.next().unwrap_or_else(|| "nndescent".into());
    // `ivf:LISTS:PROBES:MAX_LISTS` runs the inverted file with those settings.
    let custom: Vec<(usize, usize, usize)> = spec
        .split(',')
        .filter_map(|m| m.strip_prefix("ivf:"))
        .map(|m| {
            let v: Vec<usize> = m.split(':').map(|x| x.parse().expect("a number")).collect();
            (v[0], v[1], v[2])
        })
        .collect();
    let methods: Vec<Method> = spec
        .split(',')
        .filter(|m| !m.starts_with("ivf:"))
        .map(|m| match m {
            "hnsw" => Method::Hnsw,
            "nndescent" => Method::NnDescent,
            "ivf" => Method::Ivf,
            other => panic!("unknown method {other} (hnsw, nndescent, ivf)"),
        })
        .collect();
    println!(
        "| cells | dims | k | exact s | exact CPU s | method | approx s | approx CPU s | recall |"
    );
    println!("|---:|---:|---:|---:|---:|---|---:|---:|---:|");
    for &d in &dims {
        for &n in &sizes {
            // DATA=spectrum: one Gaussian with decaying spread instead of 30 clusters.
            let x = if std::env::var("DATA").as_deref() == Ok("spectrum") {
                spectrum(n, d, 1)
            } else {
                clustered(n, d, 1)
            };
            for &k in &ks {
                let search =
                    |m: Method| knn_with(&x, d, k, Metric::Euclidean, false, &Search::new(m, 0));
                if std::env::var("NO_EXACT").is_ok() {
                    // Timing only (exact search too slow at this size): no recall.
                    for &m in &methods {
                        let (a, ta, ca) = timed(|| search(m));
                        println!(
                            "| {n} | {d} | {k} | - | - | {} | {ta:.2} | {ca:.1} | - |",
                            m.name()
                        );
                        assert_eq!(a.n(), n);
                    }
                    continue;
                }
                let (exact, te, ce) = timed(|| search(Method::Exact));
                for &(lists, probes, max_lists) in &custom {
                    let (rows, ta, ca) = timed(|| {
                        let p = cellweave::numerics::ivf::Params {
                            lists,
                            probes,
                            max_lists,
                            ..cellweave::numerics::ivf::Params::for_size(n, k, 0)
                        };
                        cellweave::numerics::ivf::search(&x, &x, d, k + 1, &p)
                    });
                    let mut hit = 0usize;
                    for (q, row) in rows.iter().enumerate() {
                        let truth: HashSet<u32> = exact.row(q).0.iter().copied().collect();
                        hit += row.iter().filter(|e| truth.contains(&e.1)).count();
                    }
                    let r = hit as f64 / (n * exact.k).max(1) as f64;
                    println!(
                        "| {n} | {d} | {k} | {te:.2} | {ce:.1} | ivf:{lists}:{probes}:{max_lists} | {ta:.2} | {ca:.1} | {r:.4} |"
                    );
                }
                for &m in &methods {
                    let (approx, ta, ca) = timed(|| search(m));
                    println!(
                        "| {n} | {d} | {k} | {te:.2} | {ce:.1} | {} | {ta:.2} | {ca:.1} | {:.4} |",
                        m.name(),
                        recall(&exact, &approx)
                    );
                }
            }
        }
    }
}
