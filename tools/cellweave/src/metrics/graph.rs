//! Graph pieces: strongly connected components, `graph_connectivity`, and sub-graphs of the
//! fuzzy connectivities.

use super::stats::label_groups;
use crate::contract::Csr;
use crate::neighbors::Knn;

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

/// `graph_connectivity`: for each label, the share of its cells in the largest strongly
/// connected component of the kNN graph restricted to that label; mean over labels.
pub fn graph_connectivity(knn: &Knn, labels: &[u32], n_labels: usize) -> f64 {
    let mut scores = Vec::new();
    for (_, members) in label_groups(labels, n_labels) {
        let mut pos = vec![u32::MAX; labels.len()];
        for (p, &i) in members.iter().enumerate() {
            pos[i] = p as u32;
        }
        let adj: Vec<Vec<u32>> = members
            .iter()
            .map(|&i| {
                knn.row(i)
                    .0
                    .iter()
                    .map(|&j| pos[j as usize])
                    .filter(|&p| p != u32::MAX)
                    .collect()
            })
            .collect();
        let (comp, n_comp) = strong_components(members.len(), &adj);
        let mut sizes = vec![0usize; n_comp];
        for c in comp {
            sizes[c] += 1;
        }
        scores.push(*sizes.iter().max().unwrap_or(&0) as f64 / members.len() as f64);
    }
    scores.iter().sum::<f64>() / scores.len().max(1) as f64
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
        let mut row: Vec<(u32, f32)> = idx
            .iter()
            .zip(val)
            .filter(|(&j, _)| pos[j as usize] != u32::MAX)
            .map(|(&j, &v)| (pos[j as usize], v))
            .collect();
        row.sort_unstable_by_key(|e| e.0);
        for (j, v) in row {
            out.indices.push(j);
            out.data.push(v);
        }
        out.indptr.push(out.indices.len() as u64);
    }
    out
}

/// Adjacency lists (the sparsity pattern) of a sparse matrix.
pub fn adjacency(m: &Csr) -> Vec<Vec<u32>> {
    (0..m.n_rows()).map(|i| m.row(i).0.to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn connectivity_of_a_split_label() {
        // label 0: cells 0,1 point at each other, 2 points at 0 only (2 is its own SCC).
        let knn = Knn {
            k: 2,
            indices: vec![0, 1, 1, 0, 2, 0, 3, 2],
            distances: vec![0.0; 8],
        };
        let labels = [0u32, 0, 0, 1];
        let g = graph_connectivity(&knn, &labels, 2);
        assert!((g - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
    }
}
