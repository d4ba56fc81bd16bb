//! Nearest neighbours: exact blocked search (`exact`) and, for big data, an inverted file or
//! NN-descent (`approx`, over [`super::ivf`] and [`super::nndescent`]; HNSW from
//! `instant-distance`, `hnsw`, stays available on request). This module holds the types,
//! the choice of method and what every search shares (rows as searched, final ranking).
//!
//! Data are dense row-major `f32` matrices (`n` rows of `d` numbers).
//! Results are `n x k` row-major, each row sorted by ascending distance, ties broken by
//! the lower reference index.
//!
//! Exact search for Euclidean and cosine distance computes `|q|^2 + |r|^2 - 2 q.r` with one
//! matrix multiply per (query block, reference tile), keeps a bounded top-k per query row,
//! and runs query blocks in parallel (rayon); each multiply is sequential and the tiling
//! does not depend on the thread count, so results are identical with 1 or N threads.
//! The distances of the k kept neighbours are then recomputed directly (no cancellation
//! error in what is reported). Manhattan distance is computed directly in the same tiles.

use super::nndescent;
use super::scan::TopK;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Distance used for a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Euclidean distance.
    Euclidean,
    /// 1 - cosine similarity.
    Cosine,
    /// Sum of absolute differences.
    Manhattan,
}

/// How to search: exact blocked brute force, NN-descent, HNSW, or chosen by size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Exact search (blocked matrix multiplies).
    Exact,
    /// Random-projection forest and NN-descent (approximate, multi-threaded, deterministic).
    #[value(name = "nndescent")]
    NnDescent,
    /// Inverted file: k-means lists probed per query, candidates ranked exactly by matrix
    /// multiplies (approximate, multi-threaded, deterministic; Manhattan distance falls back
    /// to NN-descent).
    Ivf,
    /// HNSW (`instant-distance`; approximate, built on one thread: slow).
    Hnsw,
    /// Exact, or IVF when n_ref * n_query / (n_ref + n_query) exceeds 100,000 (about
    /// 200,000 cells searched against each other).
    #[default]
    Auto,
}

impl Method {
    /// The method used for `n_ref` reference and `n_query` query rows (`auto` resolved).
    pub fn resolve(self, n_ref: usize, n_query: usize, d: usize) -> Method {
        match self {
            Method::Auto => auto_method(n_ref, n_query, d),
            m => m,
        }
    }
    /// The method's name as its flag value.
    pub fn name(self) -> &'static str {
        match self {
            Method::Exact => "exact",
            Method::NnDescent => "nndescent",
            Method::Ivf => "ivf",
            Method::Hnsw => "hnsw",
            Method::Auto => "auto",
        }
    }
}

/// Search settings for [`knn_with`] / [`knn_query_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Search {
    /// How to search.
    pub method: Method,
    /// Seed of the HNSW layer assignment and of NN-descent's choices.
    pub seed: u64,
    /// HNSW `ef` at construction and at search time, and the list length of NN-descent's
    /// graph search (raised to `k` when smaller).
    pub ef: usize,
}

impl Default for Search {
    fn default() -> Self {
        Search {
            method: Method::Auto,
            seed: 0,
            ef: 64,
        }
    }
}

impl Search {
    /// `method` with `seed`, the other settings at their defaults.
    pub fn new(method: Method, seed: u64) -> Self {
        Search {
            method,
            seed,
            ..Default::default()
        }
    }
}

/// The method `auto` picks: exact below, the inverted file ([`super::ivf`]) above a size
/// threshold. Exact search costs about `4e-11 * n_ref * n_query * d` seconds on 2 cores
/// (`bench/pairs.sh`), growing with the square of the cells; the inverted file grows about
/// as `n^1.5` (docs/scale.md, `examples/knn_bench.rs`). Measured at 100,000 x 50 dims,
/// k = 15 (docs/scale.md): IVF 2.7-3.6 CPU-s against exact 14-17 CPU-s, recall 0.998-1.0 on
/// clustered data but 0.56-0.69 on one Gaussian with a decaying spectrum (no clusters), so
/// the switch sits where exact search starts to cost minutes rather than where IVF is first
/// faster: `n_ref * n_query / (n_ref + n_query) > 100,000`, about 200,000 cells searched
/// against each other (`cellweave-score --knn auto` switches there too). NN-descent and
/// HNSW are never chosen automatically (both slower than exact at 100k).
pub fn auto_method(n_ref: usize, n_query: usize, _d: usize) -> Method {
    let (r, q) = (n_ref as f64, n_query as f64);
    if r + q > 0.0 && r * q / (r + q) > AUTO_APPROX_ABOVE {
        Method::Ivf
    } else {
        Method::Exact
    }
}

/// See [`auto_method`].
pub const AUTO_APPROX_ABOVE: f64 = 100_000.0;

/// `k` neighbours per query row: `indices[q * k + r]` is the r-th nearest of query `q`.
#[derive(Debug, Clone, PartialEq)]
pub struct Knn {
    /// Neighbours per row.
    pub k: usize,
    /// Neighbour rows, `k` per query row.
    pub indices: Vec<u32>,
    /// Their distances, in the same order.
    pub distances: Vec<f32>,
}

impl Knn {
    /// Number of query rows.
    pub fn n(&self) -> usize {
        self.indices.len().checked_div(self.k).unwrap_or(0)
    }
    /// The neighbours of query row `q` and their distances.
    pub fn row(&self, q: usize) -> (&[u32], &[f32]) {
        (
            &self.indices[q * self.k..(q + 1) * self.k],
            &self.distances[q * self.k..(q + 1) * self.k],
        )
    }
    /// Each query row's neighbours under other ids: `lists[query_ids[q]]` becomes the
    /// `(reference_ids[neighbour], distance)` of query row `q`, nearest first.
    pub fn relabel_into(
        &self,
        lists: &mut [Vec<(u32, f32)>],
        query_ids: &[usize],
        reference_ids: &[usize],
    ) {
        for (q, &c) in query_ids.iter().enumerate() {
            let (idx, dist) = self.row(q);
            let ids = idx.iter().map(|&j| reference_ids[j as usize] as u32);
            lists[c] = ids.zip(dist.iter().copied()).collect();
        }
    }
}

pub use super::distance::{dot, manhattan, squared_euclidean};

/// The distance between two rows (for cosine, 1 when either is zero).
#[inline]
pub fn distance(a: &[f32], b: &[f32], metric: Metric) -> f32 {
    match metric {
        Metric::Euclidean => squared_euclidean(a, b).sqrt(),
        Metric::Manhattan => manhattan(a, b),
        Metric::Cosine => {
            let (ab, aa, bb) = (dot(a, b), dot(a, a), dot(b, b));
            let den = (aa * bb).sqrt();
            if den > 0.0 {
                1.0 - ab / den
            } else {
                1.0
            }
        }
    }
}

/// Scale every row to unit Euclidean length (zero rows stay zero).
pub fn l2_normalize_rows(data: &mut [f32], d: usize) {
    if d == 0 {
        return;
    }
    data.par_chunks_mut(d).for_each(|row| {
        let n = dot(row, row).sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|v| *v /= n);
        }
    });
}

mod approx;
mod exact;
mod hnsw;

pub use exact::{exact_query, knn_both_ways};

/// Exact k nearest neighbours of every `query` row among the `reference` rows.
/// Ties are broken by the lower reference index, so results are deterministic.
pub fn knn_query(reference: &[f32], query: &[f32], d: usize, k: usize, metric: Metric) -> Knn {
    exact_query(reference, query, d, k, metric)
}

/// Exact kNN of every row among all rows. With `include_self` the row itself is the first
/// neighbour (distance 0, as scib-metrics counts it); without, it is left out.
pub fn knn(data: &[f32], d: usize, k: usize, metric: Metric, include_self: bool) -> Knn {
    knn_with(
        data,
        d,
        k,
        metric,
        include_self,
        &Search::new(Method::Exact, 0),
    )
}

/// [`knn_query`] with a choice of search method.
pub fn knn_query_with(
    reference: &[f32],
    query: &[f32],
    d: usize,
    k: usize,
    metric: Metric,
    s: &Search,
) -> Knn {
    let n_ref = reference.len() / d.max(1);
    let n_q = query.len() / d.max(1);
    let method = s.method.resolve(n_ref, n_q, d);
    search(reference, query, d, k, metric, |w| match method {
        Method::Hnsw => hnsw::hnsw_rows(w, metric, s),
        Method::Ivf if metric != Metric::Manhattan => approx::ivf_rows(w, s),
        // The inverted file ranks by matrix multiplies: Manhattan distance uses NN-descent.
        Method::NnDescent | Method::Ivf => approx::descent_rows(w, metric, s),
        _ => exact::exact_rows(w, metric),
    })
}

/// Every row's `k` nearest rows of the same data, itself included (as [`knn_query_with`]
/// of the data against itself).
fn self_query(data: &[f32], d: usize, k: usize, metric: Metric, s: &Search) -> Knn {
    let n = data.len() / d.max(1);
    if s.method.resolve(n, n, d) != Method::NnDescent {
        return knn_query_with(data, data, d, k, metric, s);
    }
    let k = k.min(n);
    if k == 0 {
        return Knn {
            k,
            indices: Vec::new(),
            distances: Vec::new(),
        };
    }
    let r = searched_rows(data, d, metric);
    let space = nndescent::Space {
        data: &r,
        d,
        manhattan: metric == Metric::Manhattan,
    };
    let g = nndescent::build(
        &space,
        k - 1,
        &nndescent::Params::for_size(n, k - 1, s.seed),
    );
    approx::log_rounds(n, &g);
    let rows: Vec<Vec<(f32, u32)>> = (0..n)
        .into_par_iter()
        .map(|i| std::iter::once((0.0, i as u32)).chain(g.row(i)).collect())
        .collect();
    finish(rows, k, data, data, d, metric)
}

/// [`knn`] with a choice of search method.
pub fn knn_with(
    data: &[f32],
    d: usize,
    k: usize,
    metric: Metric,
    include_self: bool,
    s: &Search,
) -> Knn {
    let n = data.len() / d.max(1);
    if include_self {
        let mut r = self_query(data, d, k, metric, s);
        // Put self first even when duplicates tie with it at distance 0.
        for q in 0..r.n() {
            let row = &mut r.indices[q * r.k..(q + 1) * r.k];
            if let Some(p) = row.iter().position(|&j| j as usize == q) {
                row[..=p].rotate_right(1);
                r.distances[q * r.k..q * r.k + p + 1].rotate_right(1);
            } else if r.k > 0 {
                row.rotate_right(1);
                row[0] = q as u32;
                r.distances[q * r.k..(q + 1) * r.k].rotate_right(1);
            }
            r.distances[q * r.k] = 0.0;
        }
        r
    } else {
        let r = self_query(data, d, (k + 1).min(n), metric, s);
        let k2 = r.k;
        let kk = k.min(n.saturating_sub(1));
        let mut out = Knn {
            k: kk,
            indices: Vec::with_capacity(n * kk),
            distances: Vec::with_capacity(n * kk),
        };
        for q in 0..n {
            let (i, dd) = (
                &r.indices[q * k2..(q + 1) * k2],
                &r.distances[q * k2..(q + 1) * k2],
            );
            let mut taken = 0;
            for (&j, &dist) in i.iter().zip(dd) {
                if j as usize != q && taken < kk {
                    out.indices.push(j);
                    out.distances.push(dist);
                    taken += 1;
                }
            }
            // A search that did not return self (possible with HNSW among duplicates)
            // has one neighbour too many: nothing to do; one too few cannot happen.
        }
        out
    }
}

/// Each query row's candidates as (distance, reference row), as a search finds them.
type Rows = Vec<Vec<(f32, u32)>>;

/// What a search is given: the reference rows `r` and query rows `q` as searched
/// ([`searched_rows`], `d` numbers each), and `k`, at most the number of reference rows.
#[derive(Clone, Copy)]
struct Work<'a> {
    r: &'a [f32],
    q: &'a [f32],
    d: usize,
    k: usize,
}

/// A search of the `reference` rows for every `query` row: `k` capped at the number of
/// reference rows, `rows` run on both sets of rows as searched ([`searched_rows`]) and its
/// candidates finished ([`finish`]); an empty result when there is nothing to search.
fn search(
    reference: &[f32],
    query: &[f32],
    d: usize,
    k: usize,
    metric: Metric,
    rows: impl FnOnce(Work) -> Rows,
) -> Knn {
    let n_ref = reference.len().checked_div(d).unwrap_or(0);
    let n_q = query.len().checked_div(d).unwrap_or(0);
    let k = k.min(n_ref);
    if n_q == 0 || k == 0 {
        return Knn {
            k,
            indices: Vec::new(),
            distances: Vec::new(),
        };
    }
    let (r, q) = (
        searched_rows(reference, d, metric),
        searched_rows(query, d, metric),
    );
    let found = rows(Work { r: &r, q: &q, d, k });
    finish(found, k, reference, query, d, metric)
}

/// Assemble per-row top-k lists into a [`Knn`], recomputing each kept distance directly
/// and re-sorting by (distance, index).
fn finish(
    rows: Vec<Vec<(f32, u32)>>,
    k: usize,
    reference: &[f32],
    query: &[f32],
    d: usize,
    metric: Metric,
) -> Knn {
    let mut out = Knn {
        k,
        indices: Vec::with_capacity(rows.len() * k),
        distances: Vec::with_capacity(rows.len() * k),
    };
    let fixed: Vec<Vec<(f32, u32)>> = rows
        .into_par_iter()
        .enumerate()
        .map(|(q, mut row)| {
            let qv = &query[q * d..(q + 1) * d];
            for item in row.iter_mut() {
                let j = item.1 as usize;
                item.0 = distance(qv, &reference[j * d..(j + 1) * d], metric);
            }
            row.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            row
        })
        .collect();
    for row in fixed {
        debug_assert_eq!(row.len(), k);
        for (dist, j) in row {
            out.indices.push(j);
            out.distances.push(dist);
        }
    }
    out
}

/// The rows as they are searched: unit length for cosine distance (then the Euclidean
/// machinery ranks identically), else unchanged.
fn searched_rows(x: &[f32], d: usize, metric: Metric) -> Cow<'_, [f32]> {
    if metric == Metric::Cosine {
        let mut v = x.to_vec();
        l2_normalize_rows(&mut v, d);
        Cow::Owned(v)
    } else {
        Cow::Borrowed(x)
    }
}

#[cfg(test)]
mod tests {
    use super::exact::QUERY_BLOCK;
    use super::*;
    use crate::numerics::scan::REF_TILE;
    use crate::numerics::with_threads;
    use rand::{Rng, SeedableRng};

    fn brute(r: &[f32], q: &[f32], d: usize, k: usize, m: Metric) -> Knn {
        let n_ref = r.len() / d;
        let mut out = Knn {
            k: k.min(n_ref),
            indices: vec![],
            distances: vec![],
        };
        for qv in q.chunks(d) {
            let mut c: Vec<(f32, u32)> = r
                .chunks(d)
                .enumerate()
                .map(|(j, rv)| (distance(qv, rv, m), j as u32))
                .collect();
            c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for &(dd, j) in c.iter().take(out.k) {
                out.indices.push(j);
                out.distances.push(dd);
            }
        }
        out
    }

    fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * d)
            .map(|_| rng.random::<f32>() * 2.0 - 1.0)
            .collect()
    }

    /// Same neighbours as brute force, except where two candidates tie within rounding.
    fn assert_close(a: &Knn, b: &Knn) {
        assert_eq!(a.k, b.k);
        assert_eq!(a.indices.len(), b.indices.len());
        let mut differ = 0;
        for (p, (x, y)) in a.indices.iter().zip(&b.indices).enumerate() {
            assert!(
                (a.distances[p] - b.distances[p]).abs() <= 1e-4 * (1.0 + b.distances[p]),
                "distance at {p}"
            );
            if x != y {
                differ += 1;
            }
        }
        assert!(
            differ * 1000 <= a.indices.len(),
            "{differ} of {} positions differ",
            a.indices.len()
        );
    }

    #[test]
    fn self_first_and_sorted() {
        let data = vec![0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 5.0, 5.0];
        let r = knn(&data, 2, 3, Metric::Euclidean, true);
        assert_eq!(r.row(0).0, &[0, 1, 2]);
        assert_eq!(r.row(0).1[0], 0.0);
        let r = knn(&data, 2, 2, Metric::Euclidean, false);
        assert_eq!(r.row(0).0, &[1, 2]);
        assert_eq!(r.row(3).0[0], 2);
    }

    #[test]
    fn exact_matches_brute_force_every_metric() {
        // Sizes that cross the block and tile boundaries.
        let (d, n_ref, n_q) = (13, 2 * REF_TILE + 77, QUERY_BLOCK + 31);
        let r = random(n_ref, d, 1);
        let q = random(n_q, d, 2);
        for m in [Metric::Euclidean, Metric::Cosine, Metric::Manhattan] {
            let fast = knn_query(&r, &q, d, 15, m);
            let slow = brute(&r, &q, d, 15, m);
            assert_close(&fast, &slow);
        }
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        // Four copies of the same point (and one elsewhere) and a query on it.
        let r = vec![1.0, 1.0, 3.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let q = vec![1.0, 1.0];
        for m in [Metric::Euclidean, Metric::Cosine, Metric::Manhattan] {
            let k = knn_query(&r, &q, 2, 3, m);
            assert_eq!(k.indices, vec![0, 2, 3], "{m:?}");
        }
    }

    #[test]
    fn thread_count_does_not_change_results() {
        let d = 20;
        let r = random(3000, d, 3);
        let a = with_threads(1, || knn(&r, d, 10, Metric::Euclidean, false));
        let b = with_threads(2, || knn(&r, d, 10, Metric::Euclidean, false));
        assert_eq!(a, b);
    }

    #[test]
    fn both_ways_equals_two_queries() {
        let d = 7;
        let a = random(QUERY_BLOCK * 3 + 5, d, 7);
        let b = random(REF_TILE + 300, d, 8);
        for m in [Metric::Euclidean, Metric::Cosine, Metric::Manhattan] {
            let (ab, ba) = knn_both_ways(&a, &b, d, 5, m);
            assert_eq!(ab, knn_query(&b, &a, d, 5, m), "{m:?} a->b");
            assert_eq!(ba, knn_query(&a, &b, d, 5, m), "{m:?} b->a");
            assert_close(&ba, &brute(&a, &b, d, 5, m));
        }
        assert_eq!(
            with_threads(1, || knn_both_ways(&a, &b, d, 5, Metric::Euclidean)),
            with_threads(2, || knn_both_ways(&a, &b, d, 5, Metric::Euclidean))
        );
    }

    #[test]
    fn hnsw_recall_is_high() {
        let d = 16;
        // Clustered data, as cells are.
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let centers = random(20, d, 4);
        let r: Vec<f32> = (0..4000)
            .flat_map(|i| {
                let c = &centers[(i % 20) * d..(i % 20 + 1) * d];
                c.iter()
                    .map(|v| v + 0.3 * (rng.random::<f32>() - 0.5))
                    .collect::<Vec<_>>()
            })
            .collect();
        let s = Search {
            method: Method::Hnsw,
            seed: 1,
            ef: 64,
        };
        for m in [Metric::Euclidean, Metric::Cosine, Metric::Manhattan] {
            let a = knn_with(&r, d, 10, m, false, &s);
            let b = knn(&r, d, 10, m, false);
            let mut hit = 0;
            for q in 0..4000 {
                let exact: std::collections::HashSet<u32> = b.row(q).0.iter().copied().collect();
                hit += a.row(q).0.iter().filter(|j| exact.contains(j)).count();
            }
            let recall = hit as f64 / (4000.0 * 10.0);
            assert!(recall > 0.95, "{m:?} recall {recall}");
            // Reported distances are exact for the neighbours found.
            for q in 0..50 {
                let (idx, dist) = a.row(q);
                for (&j, &dd) in idx.iter().zip(dist) {
                    let e = distance(
                        &r[q * d..(q + 1) * d],
                        &r[j as usize * d..(j as usize + 1) * d],
                        m,
                    );
                    assert!((dd - e).abs() < 1e-5);
                }
            }
        }
    }
}
