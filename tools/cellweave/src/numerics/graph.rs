//! Graph pieces: the fuzzy connectivities of a kNN graph (UMAP's fuzzy simplicial set, as
//! scanpy builds them), strongly connected components, and sub-graphs.

use crate::contract::Csr;
use crate::numerics::neighbors::{knn_with, Knn, Method, Metric, Search};

/// Strongly connected components of a directed graph given as adjacency lists over `0..n`
/// (Tarjan's algorithm, iterative). Returns the component of each node and the count.
pub fn strong_components(n: usize, adj: &[Vec<u32>]) -> (Vec<usize>, usize) {
    const UNSEEN: usize = usize::MAX;
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut comp = vec![UNSEEN; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut next_index = 0;
    let mut n_comp = 0;
    // (node, next edge position)
    let mut call: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        call.push((root, 0));
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = call.last_mut() {
            if *pos < adj[v].len() {
                let w = adj[v][*pos] as usize;
                *pos += 1;
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(parent, _)) = call.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp[w] = n_comp;
                        if w == v {
                            break;
                        }
                    }
                    n_comp += 1;
                }
            }
        }
    }
    (comp, n_comp)
}

/// The sub-matrix of a square sparse matrix on the given rows/columns (in that order).
pub fn submatrix(m: &Csr, keep: &[usize]) -> Csr {
    let mut pos = vec![u32::MAX; m.n_rows()];
    for (p, &i) in keep.iter().enumerate() {
        pos[i] = p as u32;
    }
    let mut out = Csr::empty(keep.len());
    for &i in keep {
        let (idx, val) = m.row(i);
        let row = idx
            .iter()
            .zip(val)
            .filter(|(&j, _)| pos[j as usize] != u32::MAX)
            .map(|(&j, &v)| (pos[j as usize], v));
        push_sorted_row(&mut out, row.collect());
    }
    out
}

/// Append a row of `(column, value)` entries to `m`, sorted by column.
fn push_sorted_row(m: &mut Csr, mut row: Vec<(u32, f32)>) {
    row.sort_unstable_by_key(|e| e.0);
    for (j, v) in row {
        m.indices.push(j);
        m.data.push(v);
    }
    m.indptr.push(m.indices.len() as u64);
}

/// Adjacency lists (the sparsity pattern) of a sparse matrix.
pub fn adjacency(m: &Csr) -> Vec<Vec<u32>> {
    (0..m.n_rows()).map(|i| m.row(i).0.to_vec()).collect()
}

// ---------------------------------------------------------------- fuzzy simplicial set

const BANDWIDTH_TOLERANCE: f64 = 1e-5;
const MIN_BANDWIDTH_SCALE: f64 = 1e-3;

/// Per-cell distance to the nearest other neighbour (`rho`) and bandwidth (`sigma`) such that
/// the memberships `exp(-(d - rho) / sigma)` of the neighbours other than the cell itself sum
/// to `log2(k)` (k: neighbours per row, self included, as umap-learn counts them).
pub fn smooth_knn(knn: &Knn) -> (Vec<f64>, Vec<f64>) {
    let n = knn.n();
    let k = knn.k;
    let target = (k.max(1) as f64).log2();
    let global_mean = if knn.distances.is_empty() {
        0.0
    } else {
        knn.distances.iter().map(|&d| d as f64).sum::<f64>() / knn.distances.len() as f64
    };
    let mut rho = vec![0f64; n];
    let mut sigma = vec![0f64; n];
    for i in 0..n {
        let (idx, dist) = knn.row(i);
        // The nearest neighbour at a non-zero distance sets rho (local connectivity 1).
        rho[i] = dist
            .iter()
            .map(|&d| d as f64)
            .find(|&d| d > 0.0)
            .unwrap_or(0.0);
        let others: Vec<f64> = idx
            .iter()
            .zip(dist)
            .filter(|(&j, _)| j as usize != i)
            .map(|(_, &d)| d as f64 - rho[i])
            .collect();
        let (mut lo, mut hi, mut mid) = (0f64, f64::INFINITY, 1f64);
        for _ in 0..64 {
            let psum: f64 = others
                .iter()
                .map(|&d| if d > 0.0 { (-d / mid).exp() } else { 1.0 })
                .sum();
            if (psum - target).abs() < BANDWIDTH_TOLERANCE {
                break;
            }
            if psum > target {
                hi = mid;
                mid = (lo + hi) / 2.0;
            } else {
                lo = mid;
                mid = if hi.is_infinite() {
                    mid * 2.0
                } else {
                    (lo + hi) / 2.0
                };
            }
        }
        // Keep the bandwidth away from zero relative to the typical distance.
        let floor = if rho[i] > 0.0 {
            MIN_BANDWIDTH_SCALE * dist.iter().map(|&d| d as f64).sum::<f64>() / k as f64
        } else {
            MIN_BANDWIDTH_SCALE * global_mean
        };
        sigma[i] = mid.max(floor);
    }
    (rho, sigma)
}

/// The fuzzy simplicial set of a kNN graph, symmetrised by fuzzy union: an `n x n` sparse
/// matrix with ascending column positions per row, no diagonal and no explicit zeros.
///
/// Pass the kNN with the cell itself as first neighbour and `k = n_neighbors`, as scanpy
/// computes it (`knn(data, d, 15, Metric::Euclidean, true)`): the result is then scanpy's
/// `obsp['connectivities']` (which scib-metrics and `sc.tl.leiden` cluster).
pub fn fuzzy_connectivities(knn: &Knn) -> Csr {
    let n = knn.n();
    let (rho, sigma) = smooth_knn(knn);
    // Directed memberships, each entered both as (i, j, forward) and (j, i, backward).
    let mut entries: Vec<(u32, u32, f32, bool)> = Vec::with_capacity(2 * n * knn.k);
    for i in 0..n {
        let (idx, dist) = knn.row(i);
        for (&j, &d) in idx.iter().zip(dist) {
            if j as usize == i {
                continue;
            }
            let over = d as f64 - rho[i];
            let w = if over <= 0.0 || sigma[i] == 0.0 {
                1.0
            } else {
                (-over / sigma[i]).exp()
            };
            if w > 0.0 {
                entries.push((i as u32, j, w as f32, true));
                entries.push((j, i as u32, w as f32, false));
            }
        }
    }
    entries.sort_unstable_by_key(|a| (a.0, a.1, a.3));
    let mut out = Csr::empty(n);
    out.indptr = vec![0u64; n + 1];
    let mut p = 0;
    while p < entries.len() {
        let (i, j) = (entries[p].0, entries[p].1);
        let (mut fwd, mut bwd) = (0f32, 0f32);
        while p < entries.len() && entries[p].0 == i && entries[p].1 == j {
            if entries[p].3 {
                fwd = fwd.max(entries[p].2);
            } else {
                bwd = bwd.max(entries[p].2);
            }
            p += 1;
        }
        let (f, b) = (fwd as f64, bwd as f64);
        let w = f + b - f * b;
        if w > 0.0 {
            out.indices.push(j);
            out.data.push(w as f32);
            out.indptr[i as usize + 1] += 1;
        }
    }
    for r in 0..n {
        out.indptr[r + 1] += out.indptr[r];
    }
    out
}

/// The neighbour graph `sc.pp.neighbors(n_neighbors=k)` stores: `distances` (each cell's
/// `k - 1` nearest other cells, exact, ascending column positions) and the fuzzy
/// `connectivities` ([`fuzzy_connectivities`]), both `n x n`.
pub fn neighbor_graph(data: &[f32], d: usize, k: usize, metric: Metric) -> (Csr, Csr) {
    neighbor_graph_with(data, d, k, metric, &Search::new(Method::Exact, 0))
}

/// [`neighbor_graph`] with a choice of search (`knn_with`).
pub fn neighbor_graph_with(
    data: &[f32],
    d: usize,
    k: usize,
    metric: Metric,
    search: &Search,
) -> (Csr, Csr) {
    let n = data.len().checked_div(d).unwrap_or(0);
    let k = k.clamp(1, n.max(1));
    let neighbours = knn_with(data, d, k, metric, true, search);
    let mut distances = Csr::empty(n);
    distances.indptr = Vec::with_capacity(n + 1);
    distances.indptr.push(0);
    for i in 0..n {
        let (idx, dist) = neighbours.row(i);
        let row = idx
            .iter()
            .zip(dist)
            .filter(|(&j, _)| j as usize != i)
            .map(|(&j, &x)| (j, x));
        push_sorted_row(&mut distances, row.collect());
    }
    let connectivities = fuzzy_connectivities(&neighbours);
    (distances, connectivities)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::neighbors::{knn, Metric};

    #[test]
    fn tarjan_finds_cycles() {
        // 0 -> 1 -> 2 -> 0 (one SCC), 2 -> 3, 3 -> 4, 4 -> 3 (another), 5 alone.
        let adj = vec![vec![1], vec![2], vec![0, 3], vec![4], vec![3], vec![]];
        let (comp, n) = strong_components(6, &adj);
        assert_eq!(n, 3);
        assert_eq!(comp[0], comp[1]);
        assert_eq!(comp[1], comp[2]);
        assert_eq!(comp[3], comp[4]);
        assert_ne!(comp[0], comp[3]);
        assert_ne!(comp[5], comp[3]);
    }

    #[test]
    fn bandwidth_hits_log2_k() {
        let data: Vec<f32> = (0..200)
            .map(|i| ((i * 37 % 101) as f32).sin() * 3.0)
            .collect();
        let g = knn(&data, 2, 10, Metric::Euclidean, true);
        let (rho, sigma) = smooth_knn(&g);
        for i in 0..g.n() {
            let (idx, dist) = g.row(i);
            let s: f64 = idx
                .iter()
                .zip(dist)
                .filter(|(&j, _)| j as usize != i)
                .map(|(_, &d)| {
                    let o = d as f64 - rho[i];
                    if o > 0.0 {
                        (-o / sigma[i]).exp()
                    } else {
                        1.0
                    }
                })
                .sum();
            assert!((s - 10f64.log2()).abs() < 1e-3, "row {i}: {s}");
        }
    }

    #[test]
    fn connectivities_symmetric_fuzzy_union() {
        let data: Vec<f32> = (0..120)
            .map(|i| ((i * 13 % 29) as f32).cos() * 2.0 + (i % 7) as f32)
            .collect();
        let g = knn(&data, 3, 6, Metric::Euclidean, true);
        let c = fuzzy_connectivities(&g);
        c.validate().unwrap();
        let get = |i: usize, j: usize| {
            let (idx, w) = c.row(i);
            idx.iter()
                .position(|&x| x as usize == j)
                .map(|p| w[p])
                .unwrap_or(0.0)
        };
        for i in 0..c.n_rows() {
            let (idx, w) = c.row(i);
            for (&j, &v) in idx.iter().zip(w) {
                assert_ne!(j as usize, i);
                assert!(v > 0.0 && v <= 1.0);
                assert_eq!(v, get(j as usize, i));
            }
            // The nearest neighbour is fully connected.
            assert_eq!(get(i, g.row(i).0[1] as usize), 1.0);
        }
    }
}
