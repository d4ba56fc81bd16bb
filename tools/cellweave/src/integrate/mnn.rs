//! Mutual nearest neighbours between two batches, and Seurat's anchor filter.
//!
//! A pair (i in a, j in b) is mutual when j is among the `k` nearest b-cells of i and i is
//! among the `k` nearest a-cells of j (Seurat's `FindAnchorPairs`, `k.anchor`). The filter
//! (Seurat's `FilterAnchors`, `k.filter`) keeps a pair only if j is also among the
//! `k_filter` nearest b-cells of i in another space: the L2-normalised log-expression of
//! a few informative genes.

use crate::numerics::neighbors::{
    dot, knn_both_ways, knn_query_with, l2_normalize_rows, Method, Metric, Search,
};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// A pair of row positions (i in a, j in b) and their distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// Row position in batch a.
    pub i: u32,
    /// Row position in batch b.
    pub j: u32,
    /// Their distance.
    pub distance: f32,
}

/// Mutual `k`-nearest neighbours between the rows of `a` and `b` (`d` columns each), sorted
/// by (i, j). Exact search computes both directions in one pass.
pub fn mutual_nearest(
    a: &[f32],
    b: &[f32],
    d: usize,
    k: usize,
    metric: Metric,
    search: &Search,
) -> Vec<Pair> {
    let n_a = a.len().checked_div(d).unwrap_or(0);
    let n_b = b.len().checked_div(d).unwrap_or(0);
    if n_a == 0 || n_b == 0 || k == 0 {
        return vec![];
    }
    let method = match search.method {
        Method::Auto => crate::numerics::neighbors::auto_method(n_a.max(n_b), n_a.min(n_b), d),
        m => m,
    };
    let (ab, ba) = if method == Method::Hnsw {
        let s = Search {
            method: Method::Hnsw,
            ..*search
        };
        (
            knn_query_with(b, a, d, k, metric, &s),
            knn_query_with(a, b, d, k, metric, &s),
        )
    } else {
        knn_both_ways(a, b, d, k, metric)
    };
    let mut out = Vec::new();
    for i in 0..n_a {
        let (nbrs, dists) = ab.row(i);
        for (&j, &dist) in nbrs.iter().zip(dists) {
            if ba.row(j as usize).0.contains(&(i as u32)) {
                out.push(Pair {
                    i: i as u32,
                    j,
                    distance: dist,
                });
            }
        }
    }
    out.sort_by_key(|p| (p.i, p.j));
    out
}

/// Seurat's anchor filter: keep pair (i, j) when j is among the `k_filter` nearest rows of
/// `fb` to row i of `fa` (both `f` columns, L2-normalised here; Euclidean; ties to the
/// lower row). With `k_filter >= n_b` every pair passes. Returns one flag per pair.
///
/// Exact, and cheaper than listing the neighbours: the a-cells of the pairs are taken in
/// blocks, their distances to the b-cells computed tile by tile (one matrix multiply per
/// tile), and for each pair the b-cells closer than the partner are counted; a pair is
/// dropped as soon as `k_filter` of them are found, and a block stops once all its pairs
/// are dropped.
pub fn filter_pairs(
    pairs: &[Pair],
    fa: &[f32],
    fb: &[f32],
    f: usize,
    k_filter: usize,
) -> Vec<bool> {
    let n_b = fb.len().checked_div(f).unwrap_or(0);
    if pairs.is_empty() || f == 0 || k_filter >= n_b {
        return vec![true; pairs.len()];
    }
    // the distinct a-cells of the pairs, each with its pairs
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&p| (pairs[p].i, pairs[p].j));
    let mut cells: Vec<u32> = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &p in &order {
        if cells.last() != Some(&pairs[p].i) {
            cells.push(pairs[p].i);
            groups.push(Vec::new());
        }
        groups.last_mut().unwrap().push(p);
    }
    let mut queries = Vec::with_capacity(cells.len() * f);
    for &i in &cells {
        queries.extend_from_slice(&fa[i as usize * f..(i as usize + 1) * f]);
    }
    l2_normalize_rows(&mut queries, f);
    let mut reference = fb.to_vec();
    l2_normalize_rows(&mut reference, f);
    let b_norm: Vec<f32> = reference.chunks(f).map(|r| dot(r, r)).collect();
    const BLOCK: usize = 64;
    const TILE: usize = 2048;
    let flags: Vec<(usize, bool)> = queries
        .par_chunks(BLOCK * f)
        .enumerate()
        .flat_map_iter(|(blk, qb)| {
            let nq = qb.len() / f;
            // per pair of the block: (pair, partner, target distance^2 - |q|^2, closer so far)
            let mut todo: Vec<(usize, usize, f32, usize, usize)> = Vec::new();
            for t in 0..nq {
                let q = &qb[t * f..(t + 1) * f];
                for &p in &groups[blk * BLOCK + t] {
                    let j = pairs[p].j as usize;
                    let target = b_norm[j] - 2.0 * dot(q, &reference[j * f..(j + 1) * f]);
                    todo.push((p, j, target, 0, t));
                }
            }
            let mut open = todo.len();
            let mut dots = vec![0f32; nq * TILE];
            // Only the rows with an open pair take part in a tile's product: most pairs are
            // decided in the first tiles, after which the product shrinks to the few rows
            // still open.
            let mut live = vec![0f32; nq * f];
            let mut slot = vec![usize::MAX; nq];
            let mut start = 0;
            while start < n_b && open > 0 {
                let nt = TILE.min(n_b - start);
                slot.iter_mut().for_each(|v| *v = usize::MAX);
                let mut rows = 0;
                for it in todo.iter().filter(|it| it.3 < k_filter) {
                    let t = it.4;
                    if slot[t] == usize::MAX {
                        slot[t] = rows;
                        live[rows * f..(rows + 1) * f].copy_from_slice(&qb[t * f..(t + 1) * f]);
                        rows += 1;
                    }
                }
                let lhs = MatRef::from_row_major_slice(&live[..rows * f], rows, f);
                let rhs =
                    MatRef::from_row_major_slice(&reference[start * f..(start + nt) * f], nt, f)
                        .transpose();
                let out = MatMut::from_row_major_slice_mut(&mut dots[..rows * nt], rows, nt);
                faer::linalg::matmul::matmul(out, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
                let bn = &b_norm[start..start + nt];
                for item in todo.iter_mut().filter(|it| it.3 < k_filter) {
                    let (j, target, r) = (item.1, item.2, slot[item.4]);
                    let row = &dots[r * nt..(r + 1) * nt];
                    item.3 += count_closer(row, bn, target, start, j);
                    if item.3 >= k_filter {
                        open -= 1;
                    }
                }
                start += nt;
            }
            todo.into_iter()
                .map(|it| (it.0, it.3 < k_filter))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut keep = vec![false; pairs.len()];
    for (p, k) in flags {
        keep[p] = k;
    }
    keep
}

/// How many of a tile's b-cells (rows `start..`) are closer than the partner `j` (whose
/// `|b|^2 - 2 q.b` is `target`; ties go to the lower row; the partner itself not counted).
#[inline]
fn count_closer(dots: &[f32], b_norm: &[f32], target: f32, start: usize, j: usize) -> usize {
    let (mut lt, mut eq) = (0usize, 0usize);
    for (&dp, &bn) in dots.iter().zip(b_norm) {
        let x = bn - 2.0 * dp;
        lt += (x < target) as usize;
        eq += (x == target) as usize;
    }
    if eq > 0 {
        for (r, (&dp, &bn)) in dots.iter().zip(b_norm).enumerate() {
            lt += (bn - 2.0 * dp == target && start + r < j) as usize;
        }
    }
    if (start..start + dots.len()).contains(&j)
        && b_norm[j - start] - 2.0 * dots[j - start] < target
    {
        lt -= 1;
    }
    lt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::neighbors::distance;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.random::<f32>()).collect()
    }

    /// Brute force from the definition: all distances, rank by (distance, index).
    fn brute_mnn(a: &[f32], b: &[f32], d: usize, k: usize) -> Vec<(u32, u32)> {
        let (n_a, n_b) = (a.len() / d, b.len() / d);
        let rank_within = |q: &[f32], set: &[f32], n: usize| -> Vec<u32> {
            let mut c: Vec<(f32, u32)> = (0..n)
                .map(|j| {
                    (
                        distance(q, &set[j * d..(j + 1) * d], Metric::Euclidean),
                        j as u32,
                    )
                })
                .collect();
            c.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            c.iter().take(k).map(|x| x.1).collect()
        };
        let mut out = vec![];
        for i in 0..n_a {
            for j in rank_within(&a[i * d..(i + 1) * d], b, n_b) {
                if rank_within(&b[j as usize * d..(j as usize + 1) * d], a, n_a)
                    .contains(&(i as u32))
                {
                    out.push((i as u32, j));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn mutual_pairs_equal_brute_force() {
        for (n_a, n_b, d, k, seed) in [(300, 250, 5, 5, 1), (700, 90, 3, 3, 2), (40, 41, 8, 10, 3)]
        {
            let a = random(n_a, d, seed);
            let b = random(n_b, d, seed + 100);
            let fast: Vec<(u32, u32)> = mutual_nearest(
                &a,
                &b,
                d,
                k,
                Metric::Euclidean,
                &Search::new(Method::Exact, 0),
            )
            .iter()
            .map(|p| (p.i, p.j))
            .collect();
            let slow = brute_mnn(&a, &b, d, k);
            assert!(!slow.is_empty());
            assert_eq!(fast, slow, "n_a {n_a} n_b {n_b} d {d} k {k}");
        }
    }

    /// The approximate path (`--nn hnsw`, what `auto` picks for large batches) finds
    /// nearly the same mutual pairs as the brute-force definition on clustered data.
    #[test]
    fn hnsw_mutual_pairs_agree_with_brute_force() {
        let d = 8;
        let centers = random(12, d, 40);
        let mut rng = rand::rngs::StdRng::seed_from_u64(41);
        let mut cloud = |n: usize, shift: f32| -> Vec<f32> {
            (0..n)
                .flat_map(|i| {
                    let c = centers[(i % 12) * d..(i % 12 + 1) * d].to_vec();
                    c.into_iter()
                        .map(|v| v + shift + 0.25 * (rng.random::<f32>() - 0.5))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let (a, b) = (cloud(900, 0.0), cloud(700, 0.05));
        let k = 5;
        let slow: std::collections::HashSet<(u32, u32)> =
            brute_mnn(&a, &b, d, k).into_iter().collect();
        let search = Search {
            method: Method::Hnsw,
            seed: 3,
            ef: 64,
        };
        let fast: std::collections::HashSet<(u32, u32)> =
            mutual_nearest(&a, &b, d, k, Metric::Euclidean, &search)
                .iter()
                .map(|p| (p.i, p.j))
                .collect();
        let both = slow.intersection(&fast).count();
        let jaccard = both as f64 / slow.union(&fast).count() as f64;
        eprintln!(
            "{} brute-force mutual pairs, {} by HNSW, Jaccard {jaccard:.4}",
            slow.len(),
            fast.len()
        );
        assert!(slow.len() > 500, "{} brute-force pairs", slow.len());
        assert!(jaccard > 0.9, "HNSW vs brute force: Jaccard {jaccard}");
    }

    #[test]
    fn mutual_pairs_carry_their_distance() {
        let (a, b) = (random(50, 4, 5), random(60, 4, 6));
        for p in mutual_nearest(
            &a,
            &b,
            4,
            5,
            Metric::Euclidean,
            &Search::new(Method::Exact, 0),
        ) {
            let e = distance(
                &a[p.i as usize * 4..][..4],
                &b[p.j as usize * 4..][..4],
                Metric::Euclidean,
            );
            assert!((p.distance - e).abs() < 1e-6);
        }
    }

    /// The filter equals its definition (top-k lists by brute force), on sparse and on dense
    /// data (the two code paths).
    #[test]
    fn filter_equals_brute_force() {
        for (density, seed) in [(0.05f32, 11u64), (0.9, 12)] {
            let (n_a, n_b, f, k) = (120, 300, 40, 25);
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut gen = |n: usize| -> Vec<f32> {
                (0..n * f)
                    .map(|_| {
                        if rng.random::<f32>() < density {
                            rng.random::<f32>()
                        } else {
                            0.0
                        }
                    })
                    .collect()
            };
            let (fa, fb) = (gen(n_a), gen(n_b));
            let pairs: Vec<Pair> = (0..400)
                .map(|t| Pair {
                    i: (t * 7 % n_a) as u32,
                    j: (t * 13 % n_b) as u32,
                    distance: 0.0,
                })
                .collect();
            let keep = filter_pairs(&pairs, &fa, &fb, f, k);
            let unit = |m: &[f32]| {
                let mut m = m.to_vec();
                l2_normalize_rows(&mut m, f);
                m
            };
            let (ua, ub) = (unit(&fa), unit(&fb));
            let mut kept = 0;
            for (p, &flag) in pairs.iter().zip(&keep) {
                let q = &ua[p.i as usize * f..][..f];
                let mut c: Vec<(f32, u32)> = (0..n_b)
                    .map(|r| (distance(q, &ub[r * f..][..f], Metric::Euclidean), r as u32))
                    .collect();
                c.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
                let top: Vec<u32> = c.iter().take(k).map(|x| x.1).collect();
                assert_eq!(flag, top.contains(&p.j), "density {density} pair {p:?}");
                kept += flag as usize;
            }
            assert!(kept > 0 && kept < pairs.len());
        }
    }

    #[test]
    fn filter_keeps_partners_close_in_the_feature_space() {
        // a-cell 0 is near b-cell 0 in feature space and far from b-cell 1.
        let f = 2;
        let fa = vec![1.0, 0.0, 0.0, 1.0];
        let mut fb = vec![1.0, 0.01, 0.0, 1.0];
        for t in 0..10 {
            fb.extend_from_slice(&[1.0, 0.02 * (t + 1) as f32]);
        }
        let pairs = vec![
            Pair {
                i: 0,
                j: 0,
                distance: 0.0,
            },
            Pair {
                i: 0,
                j: 1,
                distance: 0.0,
            },
            Pair {
                i: 1,
                j: 1,
                distance: 0.0,
            },
        ];
        let keep = filter_pairs(&pairs, &fa, &fb, f, 3);
        assert_eq!(keep, vec![true, false, true]);
        // k_filter at least the batch size: everything passes
        assert_eq!(filter_pairs(&pairs, &fa, &fb, f, 12), vec![true; 3]);
    }
}
