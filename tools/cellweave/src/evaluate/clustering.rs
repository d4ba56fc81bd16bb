//! Agreement of clusterings with the labels: Leiden / Louvain over a resolution sweep (keep
//! the best NMI, report its ARI) and k-means with k = number of labels.

use crate::numerics::cluster::{kmeans, leiden, louvain, Graph};
use crate::numerics::stats::{ari, nmi};
use rayon::prelude::*;

/// Result of a resolution sweep.
#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    /// Normalized mutual information with the labels.
    pub nmi: f64,
    /// Adjusted Rand index with the labels.
    pub ari: f64,
    /// The resolution of the clustering.
    pub resolution: f64,
    /// Clusters found.
    pub n_clusters: usize,
}

/// scib-metrics' Leiden sweep: resolutions 0.2, 0.4, ..., 2.0.
pub fn leiden_resolutions() -> Vec<f64> {
    (1..=10).map(|x| 2.0 * x as f64 / 10.0).collect()
}

/// scib's (and the CLAIRE paper's) Louvain sweep: resolutions 0.1, 0.2, ..., 2.0.
pub fn louvain_resolutions() -> Vec<f64> {
    (1..=20).map(|x| x as f64 / 10.0).collect()
}

fn best(labels: &[u32], results: Vec<(f64, Vec<usize>)>) -> Sweep {
    let mut out = Sweep {
        nmi: f64::NEG_INFINITY,
        ari: f64::NAN,
        resolution: f64::NAN,
        n_clusters: 0,
    };
    for (res, memb) in results {
        let pred: Vec<u32> = memb.iter().map(|&c| c as u32).collect();
        let v = nmi(labels, &pred);
        // First maximum wins, as numpy's argmax.
        if v > out.nmi {
            out = Sweep {
                nmi: v,
                ari: ari(labels, &pred),
                resolution: res,
                n_clusters: memb.iter().max().map(|m| m + 1).unwrap_or(0),
            };
        }
    }
    out
}

/// Run `cluster` at every resolution (in parallel) on `g` with its nodes in
/// [`Graph::locality_order`] (a node order only: several times faster on big graphs), and
/// return the memberships in the original node order.
fn sweep(
    g: &Graph,
    resolutions: &[f64],
    cluster: impl Fn(&Graph, f64) -> Vec<usize> + Sync,
) -> Vec<(f64, Vec<usize>)> {
    let new_of = g.locality_order();
    let h = g.relabel(&new_of);
    resolutions
        .par_iter()
        .map(|&r| {
            let m = cluster(&h, r);
            (r, new_of.iter().map(|&p| m[p]).collect())
        })
        .collect()
}

/// Best-NMI Leiden clustering over the resolutions (each run seeded with `seed`).
pub fn leiden_sweep(g: &Graph, labels: &[u32], resolutions: &[f64], seed: u64) -> Sweep {
    best(labels, sweep(g, resolutions, |h, r| leiden(h, r, 2, seed)))
}

/// Best-NMI Louvain clustering over the resolutions.
pub fn louvain_sweep(g: &Graph, labels: &[u32], resolutions: &[f64], seed: u64) -> Sweep {
    best(labels, sweep(g, resolutions, |h, r| louvain(h, r, seed)))
}

/// NMI and ARI of k-means (k = number of labels present) against the labels.
pub fn kmeans_nmi_ari(x: &[f32], d: usize, labels: &[u32], n_init: usize, seed: u64) -> (f64, f64) {
    let k = {
        let mut seen: Vec<u32> = labels.to_vec();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    };
    let km = kmeans(x, d, k, n_init, 300, seed);
    (nmi(labels, &km.labels), ari(labels, &km.labels))
}
