//! Approximate nearest neighbours by an inverted file (IVF): k-means cells partition the
//! reference rows into lists, each query row probes the lists of its nearest centroids, and
//! the candidates are ranked exactly by matrix multiplies, as in exact search.
//!
//! The work is grouped by list: the queries whose nearest centroid is `c` are searched
//! together against the union of the lists any of them probes (at most `max_lists`, the most
//! probed first), one matrix multiply per (query block, list). Each query so sees at least
//! its own probes, and often more. The lists are contiguous in a copy of the reference sorted
//! by list, so no candidates are gathered.
//!
//! Deterministic for a seed whatever the number of threads: the k-means sample and start are
//! hashes of the seed, each centroid is the mean of its rows summed in index order, and
//! every query group is searched independently with sequential multiplies.

use super::nndescent::mix;
use super::scan::norms;
use rayon::prelude::*;

/// Settings of the coarse quantizer and the probing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Lists (k-means centroids).
    pub lists: usize,
    /// Lists each query probes (its nearest centroids).
    pub probes: usize,
    /// Lists a query group is searched against at most.
    pub max_lists: usize,
    /// Lloyd iterations.
    pub iterations: usize,
    /// Rows the centroids are fitted on (a sample chosen by hash; all rows when fewer).
    pub sample: usize,
    /// Seed of the sample and the first centroids.
    pub seed: u64,
}

impl Params {
    /// Defaults for `n` reference rows and `k` neighbours: 2·sqrt(n) lists (of sqrt(n) / 2
    /// rows, at least 64), 12 probes for k = 15, up to 24 for larger k.
    pub fn for_size(n: usize, k: usize, seed: u64) -> Self {
        let lists = (2.0 * (n as f64).sqrt()).round().max(1.0) as usize;
        let lists = lists.min(n.div_ceil(64)).max(1);
        let probes = (8 + k / 3).clamp(12, 24).min(lists);
        Params {
            lists,
            probes,
            max_lists: (3 * probes).min(lists),
            iterations: 8,
            sample: (64 * lists).max(20_000),
            seed,
        }
    }
}

/// Rows per block of the nearest-centroid multiplies.
const BLOCK: usize = 256;

/// For each row of `x`, its `m` nearest centroids (squared Euclidean), nearest first.
pub fn nearest_centroids(x: &[f32], d: usize, centroids: &[f32], m: usize) -> Vec<Vec<u32>> {
    let c = centroids.len() / d.max(1);
    let m = m.min(c);
    let c_norm = norms(centroids, d);
    x.par_chunks(BLOCK * d.max(1))
        .flat_map_iter(|qb| {
            let q_norm = norms(qb, d);
            let mut tops: Vec<super::scan::TopK> =
                q_norm.iter().map(|_| super::scan::TopK::new(m)).collect();
            super::scan::tiles(&mut tops, centroids, &c_norm, qb, &q_norm, 0, d, None);
            tops.into_iter()
                .map(|t| t.items.into_iter().map(|(_, j)| j).collect::<Vec<u32>>())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `lists` centroids fitted by Lloyd's algorithm on a sample of the rows of `x`.
pub fn kmeans(x: &[f32], d: usize, p: &Params) -> Vec<f32> {
    let n = x.len() / d.max(1);
    let c = p.lists.min(n).max(1);
    // The sample and the first centroids: the rows of smallest hash.
    let mut order: Vec<(u64, u32)> = (0..n as u32)
        .map(|i| (mix(p.seed ^ mix(i as u64 ^ 0x1F)), i))
        .collect();
    let m = p.sample.clamp(c, n.max(c));
    if m < n {
        order.select_nth_unstable(m);
        order.truncate(m);
    }
    order.sort_unstable();
    let sample: Vec<f32> = order
        .iter()
        .flat_map(|&(_, i)| x[i as usize * d..(i as usize + 1) * d].iter().copied())
        .collect();
    let mut centroids: Vec<f32> = sample[..c * d].to_vec();
    for _ in 0..p.iterations {
        let assign = nearest_centroids(&sample, d, &centroids, 1);
        // Rows of each centroid in sample order (counting sort), then their means.
        let mut start = vec![0usize; c + 1];
        for a in &assign {
            start[a[0] as usize + 1] += 1;
        }
        for j in 0..c {
            start[j + 1] += start[j];
        }
        let mut fill = start.clone();
        let mut members = vec![0u32; assign.len()];
        for (i, a) in assign.iter().enumerate() {
            members[fill[a[0] as usize]] = i as u32;
            fill[a[0] as usize] += 1;
        }
        centroids
            .par_chunks_mut(d)
            .enumerate()
            .for_each(|(j, cen)| {
                let rows = &members[start[j]..start[j + 1]];
                if rows.is_empty() {
                    return; // an empty cell keeps its centroid
                }
                let mut acc = vec![0f64; d];
                for &r in rows {
                    for (a, v) in acc.iter_mut().zip(&sample[r as usize * d..]) {
                        *a += *v as f64;
                    }
                }
                for (cv, a) in cen.iter_mut().zip(&acc) {
                    *cv = (*a / rows.len() as f64) as f32;
                }
            });
    }
    centroids
}

/// The reference rows sorted by list: `rows[start[l]..start[l + 1]]` (original indices,
/// ascending) lie in list `l`, and `data` holds them in that order.
struct Lists {
    start: Vec<usize>,
    rows: Vec<u32>,
    data: Vec<f32>,
    norm: Vec<f32>,
}

impl Lists {
    fn new(x: &[f32], d: usize, primary: &[u32], c: usize) -> Lists {
        let mut start = vec![0usize; c + 1];
        for &l in primary {
            start[l as usize + 1] += 1;
        }
        for j in 0..c {
            start[j + 1] += start[j];
        }
        let mut fill = start.clone();
        let mut rows = vec![0u32; primary.len()];
        for (i, &l) in primary.iter().enumerate() {
            rows[fill[l as usize]] = i as u32;
            fill[l as usize] += 1;
        }
        let data: Vec<f32> = rows
            .iter()
            .flat_map(|&i| x[i as usize * d..(i as usize + 1) * d].iter().copied())
            .collect();
        let norm = norms(&data, d);
        Lists {
            start,
            rows,
            data,
            norm,
        }
    }
}

/// Query rows per block of a group's multiplies.
const QUERY_BLOCK: usize = 128;

/// The `k` nearest reference rows of each query row, as (squared Euclidean distance,
/// reference index), nearest first (approximate: see the module notes).
pub fn search(
    reference: &[f32],
    query: &[f32],
    d: usize,
    k: usize,
    p: &Params,
) -> Vec<Vec<(f32, u32)>> {
    let n_q = query.len() / d.max(1);
    if n_q == 0 || reference.is_empty() || k == 0 {
        return vec![Vec::new(); n_q];
    }
    let centroids = kmeans(reference, d, p);
    let c = centroids.len() / d;
    let primary: Vec<u32> = nearest_centroids(reference, d, &centroids, 1)
        .into_iter()
        .map(|v| v[0])
        .collect();
    let lists = Lists::new(reference, d, &primary, c);
    let probes = nearest_centroids(query, d, &centroids, p.probes);
    // Query groups: by nearest centroid, in index order.
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); c];
    for (q, pr) in probes.iter().enumerate() {
        groups[pr[0] as usize].push(q as u32);
    }
    let found: Vec<Vec<Found>> = groups
        .par_iter()
        .map(|g| search_group(g, &probes, query, d, k, &lists, p.max_lists))
        .collect();
    let mut out = vec![Vec::new(); n_q];
    for (q, row) in found.into_iter().flatten() {
        out[q as usize] = row;
    }
    out
}

/// A query's index and its neighbours (squared distance, reference index).
type Found = (u32, Vec<(f32, u32)>);

/// Search one group of queries against the lists its members probe (most probed first,
/// at most `max_lists`).
fn search_group(
    group: &[u32],
    probes: &[Vec<u32>],
    query: &[f32],
    d: usize,
    k: usize,
    lists: &Lists,
    max_lists: usize,
) -> Vec<Found> {
    if group.is_empty() {
        return Vec::new();
    }
    let mut count: std::collections::BTreeMap<u32, usize> = Default::default();
    for &q in group {
        for &l in &probes[q as usize] {
            *count.entry(l).or_default() += 1;
        }
    }
    let mut chosen: Vec<(usize, u32)> = count.into_iter().map(|(l, n)| (n, l)).collect();
    chosen.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    chosen.truncate(max_lists.max(1));
    let mut ls: Vec<u32> = chosen.into_iter().map(|x| x.1).collect();
    ls.sort_unstable();
    let mut out = Vec::with_capacity(group.len());
    for block in group.chunks(QUERY_BLOCK) {
        let qb: Vec<f32> = block
            .iter()
            .flat_map(|&q| query[q as usize * d..(q as usize + 1) * d].iter().copied())
            .collect();
        let q_norm = norms(&qb, d);
        let mut tops: Vec<super::scan::TopK> =
            block.iter().map(|_| super::scan::TopK::new(k)).collect();
        for &l in &ls {
            let (a, b) = (lists.start[l as usize], lists.start[l as usize + 1]);
            if a < b {
                super::scan::tiles(
                    &mut tops,
                    &lists.data[a * d..b * d],
                    &lists.norm[a..b],
                    &qb,
                    &q_norm,
                    a,
                    d,
                    None,
                );
            }
        }
        for (&q, t) in block.iter().zip(tops) {
            let row = t
                .items
                .into_iter()
                .map(|(dist, j)| (dist, lists.rows[j as usize]))
                .collect();
            out.push((q, row));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    /// One Gaussian whose spread decays over the dimensions, as principal components do.
    fn spectrum(n: usize, d: usize) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        (0..n * d)
            .map(|t| {
                let e: f32 = StandardNormal.sample(&mut rng);
                e / (1.0 + (t % d) as f32).sqrt()
            })
            .collect()
    }

    #[test]
    fn recall_floor_and_determinism() {
        use crate::numerics::neighbors::{knn_with, Method, Metric, Search};
        let (n, d, k) = (6000, 20, 15);
        let x = spectrum(n, d);
        let exact = knn_with(
            &x,
            d,
            k,
            Metric::Euclidean,
            false,
            &Search::new(Method::Exact, 0),
        );
        let run = |threads: usize| {
            crate::numerics::with_threads(threads, || {
                knn_with(
                    &x,
                    d,
                    k,
                    Metric::Euclidean,
                    false,
                    &Search::new(Method::Ivf, 3),
                )
            })
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one, two, "thread count changed the graph");
        let mut hit = 0;
        for q in 0..n {
            let truth = exact.row(q).0;
            hit += one.row(q).0.iter().filter(|j| truth.contains(j)).count();
        }
        let recall = hit as f64 / (n * k) as f64;
        assert!(recall >= 0.95, "recall {recall}");
        // Another seed: another partition, still a kNN graph of the same quality.
        let other = knn_with(
            &x,
            d,
            k,
            Metric::Euclidean,
            false,
            &Search::new(Method::Ivf, 4),
        );
        assert_eq!(other.n(), n);
    }
}
