//! `graph_connectivity`, the scIB metric of how well each label stays connected in the kNN
//! graph.

use crate::numerics::graph::strong_components;
use crate::numerics::neighbors::Knn;
use crate::numerics::stats::label_groups;

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

#[cfg(test)]
mod tests {
    use super::*;

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
