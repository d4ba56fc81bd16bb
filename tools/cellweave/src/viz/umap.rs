//! UMAP: a 2-D picture of an embedding (McInnes, Healy & Melville 2018, arXiv:1802.03426).
//!
//! The steps follow the paper and the defaults of umap-learn as scanpy calls it
//! (`sc.pp.neighbors(n_neighbors=15)` then `sc.tl.umap(min_dist=0.5)`):
//!
//! 1. kNN graph with the cell itself as first neighbour, exact up to the size where
//!    [`crate::numerics::neighbors::auto_method`] switches to IVF ([`umap_search`]);
//! 2. fuzzy simplicial set: per cell a distance to its nearest neighbour `rho` and a bandwidth
//!    `sigma` found by bisection so that `sum_j exp(-(d_ij - rho_i) / sigma_i) = log2(k)`,
//!    symmetrised with the fuzzy union `P + P' - P o P'` ([`fuzzy_connectivities`], the same
//!    matrix scanpy stores as `connectivities` and clusters with Leiden);
//! 3. the output similarity curve `1 / (1 + a d^(2b))` fitted to `min_dist` / `spread`
//!    ([`fit_ab`]);
//! 4. spectral initialisation: the two leading non-trivial eigenvectors of
//!    `D^-1/2 W D^-1/2` (Lanczos with full re-orthogonalisation); a graph with several
//!    connected components is laid out component by component, each placed around the
//!    2-D principal-component position of its centroid in the input space; components
//!    smaller than 5 cells start at random positions around that place;
//! 5. stochastic gradient descent on the fuzzy cross-entropy, sampling each edge in
//!    proportion to its weight, with `negative_sample_rate` random repulsions per attraction
//!    and a learning rate decaying linearly to 0 over `n_epochs` (500 up to 10,000 cells,
//!    200 above, as umap-learn).
//!
//! Randomness (Lanczos start, initial jitter, negative samples) comes from one seeded
//! generator and the SGD runs on one thread in a fixed order, so a seed gives the same
//! picture on every run and every thread count.

use crate::cli::Timer;
use crate::contract::Csr;
use crate::numerics::graph::{fuzzy_connectivities, submatrix};
use crate::numerics::neighbors::{knn_with, Method, Metric, Search};

/// Parameters of [`umap`], defaulting to what scanpy uses.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UmapParams {
    /// Neighbours per cell, the cell itself included (scanpy's `n_neighbors`).
    pub n_neighbors: usize,
    /// How tightly points pack in the picture (scanpy's default 0.5; umap-learn's 0.1).
    pub min_dist: f64,
    /// Scale of the embedded distances (with `min_dist`, fixes the curve of [`fit_ab`]).
    pub spread: f64,
    /// SGD epochs; `None`: 500 up to 10,000 cells, else 200.
    pub n_epochs: Option<usize>,
    /// Initial SGD step size, decaying linearly to 0 over the epochs.
    pub learning_rate: f64,
    /// Weight of the repulsive (negative-sample) term (umap-learn's `gamma`).
    pub repulsion_strength: f64,
    /// Negative samples drawn per positive edge sample.
    pub negative_sample_rate: usize,
    /// Distance of the neighbour search.
    #[serde(skip)]
    pub metric: Metric,
    /// Seed of the neighbour search, the initialisation and the SGD sampling.
    pub seed: u64,
}

impl Default for UmapParams {
    fn default() -> Self {
        UmapParams {
            n_neighbors: 15,
            min_dist: 0.5,
            spread: 1.0,
            n_epochs: None,
            learning_rate: 1.0,
            repulsion_strength: 1.0,
            negative_sample_rate: 5,
            metric: Metric::Euclidean,
            seed: 0,
        }
    }
}

/// A small, portable, seeded generator (SplitMix64): the same stream on every platform and
/// every version of this crate.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator for `seed` (mixed, so that nearby seeds give unrelated streams).
    pub fn new(seed: u64) -> Self {
        SplitMix(seed ^ 0x5EED_CE11_u64.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform integer in [0, n) (n > 0).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

// ---------------------------------------------------------------- output curve

/// Fit `1 / (1 + a x^(2b))` by least squares (Levenberg-Marquardt) to the target similarity
/// `1` for `x < min_dist`, `exp(-(x - min_dist) / spread)` beyond, on 300 points over
/// `[0, 3 spread]` (min_dist 0.5, spread 1: a = 0.583, b = 1.334).
pub fn fit_ab(min_dist: f64, spread: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|i| 3.0 * spread * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    let cost = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| (1.0 / (1.0 + a * x.powf(2.0 * b)) - y).powi(2))
            .sum()
    };
    let (mut a, mut b) = (1.0f64, 1.0f64);
    let mut lambda = 1e-3;
    let mut c = cost(a, b);
    for _ in 0..500 {
        // Normal equations J'J and J'r of the residuals f - y.
        let (mut jaa, mut jab, mut jbb, mut ga, mut gb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x <= 0.0 {
                continue;
            }
            let p = x.powf(2.0 * b);
            let den = 1.0 + a * p;
            let f = 1.0 / den;
            let da = -p / (den * den);
            let db = -a * p * 2.0 * x.ln() / (den * den);
            let r = f - y;
            jaa += da * da;
            jab += da * db;
            jbb += db * db;
            ga += da * r;
            gb += db * r;
        }
        let mut improved = false;
        for _ in 0..30 {
            let (m11, m22) = (jaa * (1.0 + lambda), jbb * (1.0 + lambda));
            let det = m11 * m22 - jab * jab;
            if det.abs() < 1e-300 {
                lambda *= 10.0;
                continue;
            }
            let sa = -(m22 * ga - jab * gb) / det;
            let sb = -(m11 * gb - jab * ga) / det;
            let (na, nb) = (a + sa, b + sb);
            if na > 0.0 && nb > 0.0 {
                let nc = cost(na, nb);
                if nc < c {
                    let done =
                        (c - nc) < 1e-15 * c.max(1e-300) || (sa.abs() < 1e-12 && sb.abs() < 1e-12);
                    a = na;
                    b = nb;
                    c = nc;
                    lambda = (lambda / 10.0).max(1e-12);
                    improved = true;
                    if done {
                        return (a, b);
                    }
                    break;
                }
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (a, b)
}

// ---------------------------------------------------------------- spectral initialisation

/// Connected components of a symmetric graph: a component id per node (ids in order of
/// the first node) and the number of components.
pub fn components(graph: &Csr) -> (Vec<usize>, usize) {
    let n = graph.n_rows();
    let mut comp = vec![usize::MAX; n];
    let mut count = 0;
    let mut stack = Vec::new();
    for s in 0..n {
        if comp[s] != usize::MAX {
            continue;
        }
        comp[s] = count;
        stack.push(s);
        while let Some(u) = stack.pop() {
            for &v in graph.row(u).0 {
                if comp[v as usize] == usize::MAX {
                    comp[v as usize] = count;
                    stack.push(v as usize);
                }
            }
        }
        count += 1;
    }
    (comp, count)
}

/// Eigen-decomposition of a small symmetric matrix (row-major `m x m`) by cyclic Jacobi
/// rotations: eigenvalues and eigenvectors (column `c` of the returned row-major matrix).
fn jacobi_eigen(mut a: Vec<f64>, m: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; m * m];
    for i in 0..m {
        v[i * m + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..m)
            .flat_map(|i| (0..m).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * m + j].powi(2))
            .sum();
        let diag: f64 = (0..m).map(|i| a[i * m + i].powi(2)).sum();
        if off <= 1e-26 * diag.max(1e-300) {
            break;
        }
        for p in 0..m {
            for q in p + 1..m {
                let apq = a[p * m + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..m {
                    let (akp, akq) = (a[k * m + p], a[k * m + q]);
                    a[k * m + p] = c * akp - s * akq;
                    a[k * m + q] = s * akp + c * akq;
                }
                for k in 0..m {
                    let (apk, aqk) = (a[p * m + k], a[q * m + k]);
                    a[p * m + k] = c * apk - s * aqk;
                    a[q * m + k] = s * apk + c * aqk;
                }
                for k in 0..m {
                    let (vkp, vkq) = (v[k * m + p], v[k * m + q]);
                    v[k * m + p] = c * vkp - s * vkq;
                    v[k * m + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..m).map(|i| a[i * m + i]).collect(), v)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The `dim` leading eigenvectors of `D^-1/2 W D^-1/2` after the trivial one (`sqrt(degree)`)
/// of a connected symmetric graph, as `n x dim` row-major; `None` when the graph is too small.
pub fn spectral_embedding(graph: &Csr, dim: usize, rng: &mut SplitMix) -> Option<Vec<f64>> {
    let n = graph.n_rows();
    if n <= dim + 1 {
        return None;
    }
    let deg: Vec<f64> = (0..n)
        .map(|i| graph.row(i).1.iter().map(|&w| w as f64).sum())
        .collect();
    if deg.iter().any(|&d| d <= 0.0) {
        return None;
    }
    let inv_sqrt: Vec<f64> = deg.iter().map(|d| 1.0 / d.sqrt()).collect();
    let mut trivial: Vec<f64> = deg.iter().map(|d| d.sqrt()).collect();
    let norm = dot(&trivial, &trivial).sqrt();
    trivial.iter_mut().for_each(|x| *x /= norm);
    let apply = |x: &[f64], y: &mut [f64]| {
        for (i, yi) in y.iter_mut().enumerate() {
            let (idx, w) = graph.row(i);
            let s: f64 = idx
                .iter()
                .zip(w)
                .map(|(&j, &w)| w as f64 * inv_sqrt[j as usize] * x[j as usize])
                .sum();
            *yi = inv_sqrt[i] * s;
        }
    };
    // Lanczos on the complement of the trivial eigenvector, fully re-orthogonalised.
    let steps = (n - 1).min(120);
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(steps);
    let (mut alpha, mut beta) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    let orthogonalise = |v: &mut [f64], basis: &[Vec<f64>]| {
        for _ in 0..2 {
            let c = dot(v, &trivial);
            v.iter_mut().zip(&trivial).for_each(|(x, t)| *x -= c * t);
            for q in basis {
                let c = dot(v, q);
                v.iter_mut().zip(q).for_each(|(x, t)| *x -= c * t);
            }
        }
    };
    let mut q: Vec<f64> = (0..n).map(|_| rng.uniform() - 0.5).collect();
    orthogonalise(&mut q, &basis);
    let nq = dot(&q, &q).sqrt();
    q.iter_mut().for_each(|x| *x /= nq);
    let mut w = vec![0f64; n];
    for _ in 0..steps {
        apply(&q, &mut w);
        alpha.push(dot(&w, &q));
        basis.push(q.clone());
        orthogonalise(&mut w, &basis);
        let b = dot(&w, &w).sqrt();
        if b < 1e-10 || basis.len() == steps {
            break;
        }
        beta.push(b);
        q.iter_mut().zip(&w).for_each(|(qi, wi)| *qi = wi / b);
    }
    let m = basis.len();
    if m < dim {
        return None;
    }
    let mut t = vec![0f64; m * m];
    for i in 0..m {
        t[i * m + i] = alpha[i];
        if i + 1 < m {
            t[i * m + i + 1] = beta[i];
            t[(i + 1) * m + i] = beta[i];
        }
    }
    let (vals, vecs) = jacobi_eigen(t, m);
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&x, &y| vals[y].total_cmp(&vals[x]));
    let mut out = vec![0f64; n * dim];
    for (c, &e) in order.iter().take(dim).enumerate() {
        for (r, qb) in basis.iter().enumerate() {
            let s = vecs[r * m + e];
            for i in 0..n {
                out[i * dim + c] += s * qb[i];
            }
        }
    }
    Some(out)
}

/// Initial 2-D positions: spectral per connected component, components placed apart.
/// `data` (`n x d`) positions the components relative to each other.
pub fn initialise(graph: &Csr, data: &[f32], d: usize, rng: &mut SplitMix) -> Vec<f32> {
    const DIM: usize = 2;
    let n = graph.n_rows();
    let (comp, n_comp) = components(graph);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_comp];
    for (i, &c) in comp.iter().enumerate() {
        members[c].push(i);
    }
    // Where each component goes, and how much room it has.
    let centres = component_centres(&members, data, d);
    let room: Vec<f64> = (0..n_comp)
        .map(|c| {
            let nearest = (0..n_comp)
                .filter(|&o| o != c)
                .map(|o| {
                    ((centres[c][0] - centres[o][0]).powi(2)
                        + (centres[c][1] - centres[o][1]).powi(2))
                    .sqrt()
                })
                .fold(f64::INFINITY, f64::min);
            if nearest.is_finite() {
                (nearest / 2.0).max(1e-3)
            } else {
                1.0
            }
        })
        .collect();
    let mut pos = vec![0f64; n * DIM];
    for (c, nodes) in members.iter().enumerate() {
        let layout = if nodes.len() >= 5 {
            spectral_embedding(&submatrix(graph, nodes), DIM, rng)
        } else {
            None
        };
        let layout = layout.unwrap_or_else(|| {
            (0..nodes.len() * DIM)
                .map(|_| rng.uniform() * 2.0 - 1.0)
                .collect()
        });
        let scale = layout.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
        for (local, &i) in nodes.iter().enumerate() {
            for k in 0..DIM {
                pos[i * DIM + k] = centres[c][k] + room[c] * layout[local * DIM + k] / scale;
            }
        }
    }
    // umap-learn's scaling: largest coordinate 10, a little jitter, then each axis to [0, 10].
    let expansion = 10.0 / pos.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    for v in pos.iter_mut() {
        *v = *v * expansion + 1e-4 * rng.normal();
    }
    let mut out = vec![0f32; n * DIM];
    for k in 0..DIM {
        let (lo, hi) = (0..n)
            .map(|i| pos[i * DIM + k])
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
        let span = (hi - lo).max(1e-12);
        for i in 0..n {
            out[i * DIM + k] = (10.0 * (pos[i * DIM + k] - lo) / span) as f32;
        }
    }
    out
}

/// 2-D positions of the components: their centroids in the input space projected on the
/// two leading principal axes of the centroids, scaled to a largest coordinate of 1.
fn component_centres(members: &[Vec<usize>], data: &[f32], d: usize) -> Vec<[f64; 2]> {
    let c = members.len();
    if c == 1 {
        return vec![[0.0, 0.0]];
    }
    let mut cent = vec![0f64; c * d];
    for (k, nodes) in members.iter().enumerate() {
        for &i in nodes {
            for t in 0..d {
                cent[k * d + t] += data[i * d + t] as f64 / nodes.len() as f64;
            }
        }
    }
    let mean: Vec<f64> = (0..d)
        .map(|t| (0..c).map(|k| cent[k * d + t]).sum::<f64>() / c as f64)
        .collect();
    for k in 0..c {
        for t in 0..d {
            cent[k * d + t] -= mean[t];
        }
    }
    // Principal axes from the c x c Gram matrix (c is small).
    let mut gram = vec![0f64; c * c];
    for a in 0..c {
        for b in 0..c {
            gram[a * c + b] = dot(&cent[a * d..(a + 1) * d], &cent[b * d..(b + 1) * d]);
        }
    }
    let (vals, vecs) = jacobi_eigen(gram, c);
    let mut order: Vec<usize> = (0..c).collect();
    order.sort_by(|&x, &y| vals[y].total_cmp(&vals[x]));
    let mut out: Vec<[f64; 2]> = (0..c)
        .map(|k| {
            let mut p = [0.0; 2];
            for (axis, &e) in order.iter().take(2).enumerate() {
                p[axis] = vecs[k * c + e] * vals[e].max(0.0).sqrt();
            }
            p
        })
        .collect();
    let scale = out
        .iter()
        .flat_map(|p| p.iter())
        .fold(0f64, |m, v| m.max(v.abs()));
    if scale > 0.0 {
        out.iter_mut()
            .for_each(|p| p.iter_mut().for_each(|v| *v /= scale));
    } else {
        // All centroids coincide: spread the components on a circle.
        for (k, p) in out.iter_mut().enumerate() {
            let t = std::f64::consts::TAU * k as f64 / c as f64;
            *p = [t.cos(), t.sin()];
        }
    }
    out
}

// ---------------------------------------------------------------- layout

/// Default epochs (umap-learn): 500 up to 10,000 cells, else 200.
pub fn default_epochs(n: usize) -> usize {
    if n <= 10_000 {
        500
    } else {
        200
    }
}

/// Optimise the layout by SGD on the fuzzy cross-entropy (umap-learn's Euclidean optimiser).
/// `embedding` is `n x 2` row-major and is updated in place.
pub fn optimise_layout(
    graph: &Csr,
    embedding: &mut [f32],
    a: f64,
    b: f64,
    params: &UmapParams,
    rng: &mut SplitMix,
) {
    const DIM: usize = 2;
    let n = graph.n_rows();
    let n_epochs = params.n_epochs.unwrap_or_else(|| default_epochs(n));
    if n < 2 || n_epochs == 0 {
        return;
    }
    let w_max = graph.data.iter().fold(0f32, |m, &w| m.max(w)) as f64;
    if w_max <= 0.0 {
        return;
    }
    // Edges too weak to be sampled even once are dropped (as umap-learn does).
    let threshold = w_max / n_epochs as f64;
    let mut head = Vec::new();
    let mut tail = Vec::new();
    let mut every = Vec::new();
    for i in 0..n {
        let (idx, w) = graph.row(i);
        for (&j, &w) in idx.iter().zip(w) {
            if (w as f64) >= threshold {
                head.push(i as u32);
                tail.push(j);
                every.push(w_max / w as f64);
            }
        }
    }
    let neg_rate = params.negative_sample_rate as f64;
    let every_neg: Vec<f64> = every.iter().map(|e| e / neg_rate.max(1e-12)).collect();
    let mut next = every.clone();
    let mut next_neg = every_neg.clone();
    let (a, b) = (a as f32, b as f32);
    let gamma = params.repulsion_strength as f32;
    let clip = |g: f32| g.clamp(-4.0, 4.0);
    for epoch in 0..n_epochs {
        let alpha = (params.learning_rate * (1.0 - epoch as f64 / n_epochs as f64)) as f32;
        let e = epoch as f64;
        for edge in 0..head.len() {
            if next[edge] > e {
                continue;
            }
            let (j, k) = (head[edge] as usize, tail[edge] as usize);
            let dx = embedding[j * DIM] - embedding[k * DIM];
            let dy = embedding[j * DIM + 1] - embedding[k * DIM + 1];
            let d2 = dx * dx + dy * dy;
            if d2 > 0.0 {
                let pb = d2.powf(b);
                let coeff = -2.0 * a * b * pb / d2 / (a * pb + 1.0);
                let (gx, gy) = (clip(coeff * dx) * alpha, clip(coeff * dy) * alpha);
                embedding[j * DIM] += gx;
                embedding[j * DIM + 1] += gy;
                embedding[k * DIM] -= gx;
                embedding[k * DIM + 1] -= gy;
            }
            next[edge] += every[edge];
            let n_neg = ((e - next_neg[edge]) / every_neg[edge]).max(0.0) as usize;
            for _ in 0..n_neg {
                let k = rng.below(n);
                if k == j {
                    continue;
                }
                let dx = embedding[j * DIM] - embedding[k * DIM];
                let dy = embedding[j * DIM + 1] - embedding[k * DIM + 1];
                let d2 = dx * dx + dy * dy;
                if d2 > 0.0 {
                    let coeff = 2.0 * gamma * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0));
                    embedding[j * DIM] += clip(coeff * dx) * alpha;
                    embedding[j * DIM + 1] += clip(coeff * dy) * alpha;
                }
            }
            next_neg[edge] += n_neg as f64 * every_neg[edge];
        }
    }
}

/// UMAP of `n x d` row-major data to `n x 2` row-major coordinates (stage times on stderr
/// unless quiet).
pub fn umap(data: &[f32], d: usize, params: &UmapParams) -> Vec<f32> {
    let n = data.len().checked_div(d).unwrap_or(0);
    if n < 3 {
        // Nothing to lay out: put the cells on a line.
        return (0..n).flat_map(|i| [i as f32, 0.0]).collect();
    }
    let k = params.n_neighbors.clamp(2, n);
    let timer = Timer::start("umap: neighbours");
    let neighbours = knn_with(
        data,
        d,
        k,
        params.metric,
        true,
        &Search::new(umap_search(n, d), params.seed),
    );
    timer.done();
    let timer = Timer::start("umap: fuzzy graph");
    let graph = fuzzy_connectivities(&neighbours);
    timer.done();
    embed_graph(&graph, data, d, params)
}

/// The neighbour search [`umap`] uses for `n` points in `d` dimensions (exact, or IVF
/// for large `n`), to record in provenance.
pub fn umap_search(n: usize, d: usize) -> Method {
    Method::Auto.resolve(n, n, d)
}

/// UMAP layout of a fuzzy graph built by [`fuzzy_connectivities`]; `data` (`n x d`) only
/// places disconnected components relative to each other.
pub fn embed_graph(graph: &Csr, data: &[f32], d: usize, params: &UmapParams) -> Vec<f32> {
    let mut rng = SplitMix::new(params.seed);
    let (a, b) = fit_ab(params.min_dist, params.spread);
    let timer = Timer::start("umap: spectral initialisation");
    let mut embedding = initialise(graph, data, d, &mut rng);
    timer.done();
    let timer = Timer::start("umap: layout");
    optimise_layout(graph, &mut embedding, a, b, params, &mut rng);
    timer.done();
    embedding
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ab_matches_scipy_curve_fit() {
        // Values from umap-learn's find_ab_params (scipy.optimize.curve_fit).
        let (a, b) = fit_ab(0.5, 1.0);
        assert!(
            (a - 0.5830300).abs() < 2e-3 && (b - 1.3341670).abs() < 2e-3,
            "a {a} b {b}"
        );
        let (a, b) = fit_ab(0.1, 1.0);
        assert!(
            (a - 1.5769435).abs() < 5e-3 && (b - 0.8950609).abs() < 2e-3,
            "a {a} b {b}"
        );
    }

    #[test]
    fn jacobi_diagonalises() {
        let a = vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 1.0];
        let (vals, vecs) = jacobi_eigen(a.clone(), 3);
        for e in 0..3 {
            for r in 0..3 {
                let av: f64 = (0..3).map(|c| a[r * 3 + c] * vecs[c * 3 + e]).sum();
                assert!((av - vals[e] * vecs[r * 3 + e]).abs() < 1e-9);
            }
        }
    }
}
