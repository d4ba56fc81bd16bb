//! Local inverse Simpson index (Korsunsky et al. 2019) on a kNN graph, as scib-metrics
//! computes it: per cell, Gaussian weights `exp(-β d)` on the neighbours' distances (the cell
//! itself excluded), β found by bisection so that the entropy of the weights equals
//! `ln(perplexity)` (perplexity = k / 3, tolerance 1e-5, at most 50 steps), then
//! `1 / Σ_c (Σ_{j in c} p_j)^2`. `ilisi_knn` and `clisi_knn` are the scaled medians.

use crate::numerics::neighbors::Knn;
use crate::numerics::stats::nanmedian;
use rayon::prelude::*;

const TOL: f64 = 1e-5;
const MAX_TRIES: usize = 50;

/// Entropy and normalised weights for one row at precision β (self masked out).
fn h_beta(dist: &[f64], mask: &[bool], beta: f64, p: &mut [f64]) -> f64 {
    let mut sum = 0.0;
    for ((pj, &d), &m) in p.iter_mut().zip(dist).zip(mask) {
        *pj = if m { (-d * beta).exp() } else { 0.0 };
        sum += *pj;
    }
    if sum == 0.0 {
        p.iter_mut().for_each(|x| *x = 0.0);
        return 0.0;
    }
    let dp: f64 = dist.iter().zip(p.iter()).map(|(d, pj)| d * pj).sum();
    p.iter_mut().for_each(|x| *x /= sum);
    sum.ln() + beta * dp / sum
}

/// Per-cell neighbour weights (`k` per cell, the cell itself at 0): β found by bisection
/// so that the entropy of the weights is `ln(perplexity)`. They depend on the distances only,
/// so one set serves every grouping (labels and batches). A row whose weights vanish is all
/// zeros (its Simpson index is then −1, as scib-metrics returns).
pub struct Weights {
    /// Neighbours per cell.
    pub k: usize,
    /// The weights, `n x k`.
    pub p: Vec<f64>,
    /// Per cell: the entropy reached is 0 (weights vanished).
    pub vanished: Vec<bool>,
}

fn row_weights(dist: &[f64], mask: &[bool], perplexity: f64, p: &mut [f64]) -> bool {
    let log_u = perplexity.ln();
    let mut beta = 1.0;
    let (mut betamin, mut betamax) = (f64::NEG_INFINITY, f64::INFINITY);
    let mut h = h_beta(dist, mask, beta, p);
    let mut hdiff = h - log_u;
    let mut tries = 0;
    while hdiff.abs() >= TOL && tries < MAX_TRIES {
        if hdiff > 0.0 {
            betamin = beta;
            beta = if betamax == f64::INFINITY {
                beta * 2.0
            } else {
                (beta + betamax) / 2.0
            };
        } else {
            betamax = beta;
            beta = if betamin == f64::NEG_INFINITY {
                beta / 2.0
            } else {
                (beta + betamin) / 2.0
            };
        }
        h = h_beta(dist, mask, beta, p);
        hdiff = h - log_u;
        tries += 1;
    }
    h == 0.0
}

/// The weights of every cell's neighbours (perplexity `k / 3` by default).
pub fn weights(knn: &Knn, perplexity: Option<f64>) -> Weights {
    let perplexity = perplexity.unwrap_or((knn.k / 3) as f64);
    let k = knn.k;
    let mut p = vec![0f64; knn.n() * k];
    let vanished: Vec<bool> = p
        .par_chunks_mut(k.max(1))
        .enumerate()
        .map(|(i, pi)| {
            let (idx, dist) = knn.row(i);
            let d: Vec<f64> = dist.iter().map(|&x| x as f64).collect();
            let mask: Vec<bool> = idx.iter().map(|&j| j as usize != i).collect();
            row_weights(&d, &mask, perplexity, pi)
        })
        .collect();
    Weights { k, p, vanished }
}

/// Per-cell LISI (`1 / simpson`) of the codes, from the neighbour weights.
pub fn lisi_from(w: &Weights, knn: &Knn, codes: &[u32], n_codes: usize) -> Vec<f64> {
    (0..knn.n())
        .into_par_iter()
        .map(|i| {
            if w.vanished[i] {
                return -1.0;
            }
            let (idx, _) = knn.row(i);
            let mut per = vec![0f64; n_codes];
            for (&j, &pj) in idx.iter().zip(&w.p[i * w.k..(i + 1) * w.k]) {
                per[codes[j as usize] as usize] += pj;
            }
            1.0 / per.iter().map(|x| x * x).sum::<f64>()
        })
        .collect()
}

/// Per-cell LISI (`1 / simpson`) of the codes over the kNN (perplexity `k / 3` by default).
pub fn lisi(knn: &Knn, codes: &[u32], n_codes: usize, perplexity: Option<f64>) -> Vec<f64> {
    lisi_from(&weights(knn, perplexity), knn, codes, n_codes)
}

/// `ilisi_knn`: median batch LISI scaled to [0, 1] by `(x - 1) / (n_batches - 1)`.
pub fn ilisi_knn(w: &Weights, knn: &Knn, batches: &[u32], n_batches: usize) -> f64 {
    let l = nanmedian(&lisi_from(w, knn, batches, n_batches));
    (l - 1.0) / (n_batches as f64 - 1.0)
}

/// `clisi_knn`: median label LISI scaled to [0, 1] by `(n_labels - x) / (n_labels - 1)`.
pub fn clisi_knn(w: &Weights, knn: &Knn, labels: &[u32], n_labels: usize) -> f64 {
    let l = nanmedian(&lisi_from(w, knn, labels, n_labels));
    (n_labels as f64 - l) / (n_labels as f64 - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_mixed_neighbourhood() {
        // Every cell's 30 neighbours at equal distance, half of each code: LISI = 2.
        let n = 31;
        let mut indices = Vec::new();
        let mut distances = Vec::new();
        for i in 0..n {
            indices.push(i as u32);
            distances.push(0.0);
            for j in 0..n {
                if j != i {
                    indices.push(j as u32);
                    distances.push(1.0);
                }
            }
        }
        let knn = Knn {
            k: n,
            indices,
            distances,
        };
        let codes: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let l = lisi(&knn, &codes, 2, Some(10.0));
        // 30 other cells: 15/15 or 14/16 (cells are excluded from their own row).
        for (i, v) in l.iter().enumerate() {
            let same = if i % 2 == 0 { 15.0 } else { 14.0 };
            let other = 30.0 - same;
            let want = 1.0 / ((same / 30.0f64).powi(2) + (other / 30.0f64).powi(2));
            assert!((v - want).abs() < 1e-9, "{i}: {v} vs {want}");
        }
    }
}
