//! k-means: k-means++ seeding (scikit-learn's and scib-metrics' variant) and Lloyd iterations.

use super::*;

/// k-means result.
#[derive(Debug, Clone)]
pub struct KMeans {
    /// The cluster of each point.
    pub labels: Vec<u32>,
    /// `k x d` centres, row-major.
    pub centers: Vec<f64>,
    /// Sum of squared distances of the points to their centres.
    pub inertia: f64,
    /// Lloyd iterations run.
    pub iterations: usize,
}

/// Squared distances of every row to every centre, then the nearest centre and its distance.
pub(super) fn assign(x: &[f64], d: usize, centers: &[f64], labels: &mut [u32]) -> f64 {
    let k = centers.len() / d;
    labels
        .par_iter_mut()
        .enumerate()
        .map(|(i, l)| {
            let row = &x[i * d..(i + 1) * d];
            let mut best = (f64::INFINITY, 0u32);
            for c in 0..k {
                let ctr = &centers[c * d..(c + 1) * d];
                let s: f64 = row.iter().zip(ctr).map(|(a, b)| (a - b) * (a - b)).sum();
                if s < best.0 {
                    best = (s, c as u32);
                }
            }
            *l = best.1;
            best.0
        })
        .sum()
}

/// JAX's default random numbers (threefry2x32, "partitionable" layout, jax 0.5+), enough of
/// them to draw k-means++ seeds exactly as scib-metrics' JAX `KMeans` does for a seed: the
/// same keys, bits, uniforms, Gumbel noise, permutations and weighted choices.
pub mod jax_random {
    /// A key: two 32-bit words (`jax.random.PRNGKey(seed)` = `[seed >> 32, seed & 0xffffffff]`).
    pub type Key = [u32; 2];

    /// The key of a seed.
    pub fn key(seed: u64) -> Key {
        [(seed >> 32) as u32, seed as u32]
    }

    /// The Threefry-2x32 block cipher (20 rounds).
    pub fn threefry2x32(key: Key, x: [u32; 2]) -> [u32; 2] {
        const ROT: [[u32; 4]; 2] = [[13, 15, 26, 6], [17, 29, 16, 24]];
        let ks = [key[0], key[1], key[0] ^ key[1] ^ 0x1BD1_1BDA];
        let (mut x0, mut x1) = (x[0].wrapping_add(ks[0]), x[1].wrapping_add(ks[1]));
        for i in 0..5 {
            for &r in &ROT[i % 2] {
                x0 = x0.wrapping_add(x1);
                x1 = x1.rotate_left(r) ^ x0;
            }
            x0 = x0.wrapping_add(ks[(i + 1) % 3]);
            x1 = x1.wrapping_add(ks[(i + 2) % 3]).wrapping_add(i as u32 + 1);
        }
        [x0, x1]
    }

    /// `jax.random.split(key, num)`.
    pub fn split(key: Key, num: usize) -> Vec<Key> {
        (0..num as u64)
            .map(|j| threefry2x32(key, [(j >> 32) as u32, j as u32]))
            .collect()
    }

    /// `jax.random.bits(key, (n,), uint32)`.
    pub fn bits(key: Key, n: usize) -> Vec<u32> {
        (0..n as u64)
            .map(|i| {
                let b = threefry2x32(key, [(i >> 32) as u32, i as u32]);
                b[0] ^ b[1]
            })
            .collect()
    }

    /// `jax.random.uniform(key, (n,), float32, minval, maxval)`.
    pub fn uniform(key: Key, n: usize, minval: f32, maxval: f32) -> Vec<f32> {
        bits(key, n)
            .into_iter()
            .map(|b| {
                let u = f32::from_bits((b >> 9) | 0x3F80_0000) - 1.0;
                (u * (maxval - minval) + minval).max(minval)
            })
            .collect()
    }

    /// `jax.random.gumbel(key, (n,), float32)` (mode "low", the default).
    pub fn gumbel(key: Key, n: usize) -> Vec<f32> {
        uniform(key, n, f32::MIN_POSITIVE, 1.0)
            .into_iter()
            .map(|u| -(-u.ln()).ln())
            .collect()
    }

    /// `jax.random.permutation(key, n)`: rounds of stable sorts by random 32-bit keys.
    pub fn permutation(key: Key, n: usize) -> Vec<usize> {
        let rounds = (3.0 * (n.max(1) as f64).ln() / (u32::MAX as f64).ln()).ceil() as usize;
        let mut x: Vec<usize> = (0..n).collect();
        let mut key = key;
        for _ in 0..rounds {
            let ks = split(key, 2);
            key = ks[0];
            let sort_keys = bits(ks[1], n);
            let mut pairs: Vec<(u32, usize)> = sort_keys.into_iter().zip(x).collect();
            pairs.sort_by_key(|p| p.0);
            x = pairs.into_iter().map(|p| p.1).collect();
        }
        x
    }

    /// `jax.random.choice(key, n, (m,), replace=False, p=p)`: Gumbel top-m of `log p`.
    pub fn choice_weighted(key: Key, p: &[f32], m: usize) -> Vec<usize> {
        let g = gumbel(key, p.len());
        let mut scored: Vec<(f32, usize)> = g
            .iter()
            .zip(p)
            .enumerate()
            .map(|(i, (&gi, &pi))| (gi + pi.ln(), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(m).map(|s| s.1).collect()
    }
}

/// k-means++ seeding with greedy local trials (`2 + ln k` candidates per step), drawing the
/// random numbers exactly as scib-metrics' JAX implementation does for the same key (the
/// first centre uniformly, each next one among candidates drawn in proportion to the squared
/// distance to the nearest centre, keeping the candidate that lowers the potential most).
pub(super) fn seed_plus_plus(x: &[f32], d: usize, k: usize, key: jax_random::Key) -> Vec<f64> {
    use jax_random::{choice_weighted, permutation, split};
    let n = x.len() / d;
    let sqdist = |i: usize, c: &[f32]| -> f64 {
        x[i * d..(i + 1) * d]
            .iter()
            .zip(c)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum()
    };
    let ks = split(key, 2);
    let first = permutation(ks[1], n)[0];
    let mut key = ks[0];
    let mut chosen = vec![first];
    let c0 = &x[first * d..(first + 1) * d];
    let mut min_d: Vec<f64> = (0..n).into_par_iter().map(|i| sqdist(i, c0)).collect();
    let trials = 2 + (k as f64).ln() as usize;
    for _ in 1..k {
        let ks = split(key, 2);
        key = ks[0];
        let total: f64 = min_d.iter().sum();
        let p: Vec<f32> = min_d.iter().map(|&m| (m / total) as f32).collect();
        let cands = choice_weighted(ks[1], &p, trials.min(n));
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for cand in cands {
            let c = &x[cand * d..(cand + 1) * d];
            let new_d: Vec<f64> = (0..n)
                .into_par_iter()
                .map(|i| sqdist(i, c).min(min_d[i]))
                .collect();
            let pot: f64 = new_d.iter().sum();
            if best.as_ref().map(|b| pot < b.0).unwrap_or(true) {
                best = Some((pot, cand, new_d));
            }
        }
        let (_, cand, new_d) = best.expect("at least one candidate");
        chosen.push(cand);
        min_d = new_d;
    }
    chosen
        .iter()
        .flat_map(|&c| x[c * d..(c + 1) * d].iter().map(|&v| v as f64))
        .collect()
}

/// k-means of `n x d` rows (row-major) into `k` clusters, as scib-metrics' `KMeans`: the data
/// are centred (float32, as numpy), `n_init` runs with keys `split(PRNGKey(seed), n_init)`,
/// k-means++ seeding ([`seed_plus_plus`]), Lloyd iterations until the assignment no longer
/// changes (at most `max_iter`; an empty cluster's centre moves to the data mean), the run
/// with the lowest inertia kept.
pub fn kmeans(
    data: &[f32],
    d: usize,
    k: usize,
    n_init: usize,
    max_iter: usize,
    seed: u64,
) -> KMeans {
    let n = data.len().checked_div(d).unwrap_or(0);
    let k = k.min(n).max(1);
    // numpy's float32 column means (rows added in order), then X -= mean in float32.
    let mut mean32 = vec![0f32; d];
    for i in 0..n {
        for (m, &v) in mean32.iter_mut().zip(&data[i * d..(i + 1) * d]) {
            *m += v;
        }
    }
    mean32.iter_mut().for_each(|m| *m /= n.max(1) as f32);
    let xc: Vec<f32> = data
        .iter()
        .enumerate()
        .map(|(p, &v)| v - mean32[p % d])
        .collect();
    let x: Vec<f64> = xc.iter().map(|&v| v as f64).collect();
    let mean: Vec<f64> = mean32.iter().map(|&m| m as f64).collect();
    let mut best: Option<KMeans> = None;
    for key in jax_random::split(jax_random::key(seed), n_init.max(1)) {
        if n == 0 {
            break;
        }
        let mut centers = seed_plus_plus(&xc, d, k, key);
        let mut labels = vec![u32::MAX; n];
        let mut prev = labels.clone();
        let mut inertia = assign(&x, d, &centers, &mut labels);
        let mut iterations = 0;
        while iterations < max_iter && labels != prev {
            iterations += 1;
            let mut sums = vec![0f64; k * d];
            let mut counts = vec![0usize; k];
            for i in 0..n {
                let c = labels[i] as usize;
                counts[c] += 1;
                for (s, v) in sums[c * d..(c + 1) * d]
                    .iter_mut()
                    .zip(&x[i * d..(i + 1) * d])
                {
                    *s += v;
                }
            }
            for c in 0..k {
                let cnt = counts[c].max(1) as f64;
                for j in 0..d {
                    centers[c * d + j] = sums[c * d + j] / cnt;
                }
            }
            prev.clone_from(&labels);
            inertia = assign(&x, d, &centers, &mut labels);
        }
        if best.as_ref().map(|b| inertia < b.inertia).unwrap_or(true) {
            best = Some(KMeans {
                labels,
                centers,
                inertia,
                iterations,
            });
        }
    }
    let mut out = best.unwrap_or(KMeans {
        labels: Vec::new(),
        centers: Vec::new(),
        inertia: 0.0,
        iterations: 0,
    });
    for center in out.centers.chunks_mut(d.max(1)) {
        for (x, m) in center.iter_mut().zip(&mean) {
            *x += m;
        }
    }
    out
}
