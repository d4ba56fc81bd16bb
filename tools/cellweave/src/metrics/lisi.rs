//! Local inverse Simpson index (Korsunsky et al. 2019) on a kNN graph, as scib-metrics
//! computes it: per cell, Gaussian weights `exp(-β d)` on the neighbours' distances (the cell
//! itself excluded), β found by bisection so that the entropy of the weights equals
//! `ln(perplexity)` (perplexity = k / 3, tolerance 1e-5, at most 50 steps), then
//! `1 / Σ_c (Σ_{j in c} p_j)^2`. `ilisi_knn` and `clisi_knn` are the scaled medians.

use super::stats::nanmedian;
use crate::neighbors::Knn;
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

/// Simpson index of one cell (−1 when the weights vanish, as scib-metrics returns).
fn simpson_one(dist: &[f64], mask: &[bool], codes: &[u32], n_codes: usize, perplexity: f64) -> f64 {
    let mut p = vec![0f64; dist.len()];
    let log_u = perplexity.ln();
    let mut beta = 1.0;
    let (mut betamin, mut betamax) = (f64::NEG_INFINITY, f64::INFINITY);
    let mut h = h_beta(dist, mask, beta, &mut p);
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
        h = h_beta(dist, mask, beta, &mut p);
        hdiff = h - log_u;
        tries += 1;
    }
    if h == 0.0 {
        return -1.0;
    }
    let mut per = vec![0f64; n_codes];
    for (&c, &pj) in codes.iter().zip(&p) {
        per[c as usize] += pj;
    }
    per.iter().map(|x| x * x).sum()
}

/// Per-cell LISI (`1 / simpson`) of the codes over the kNN (perplexity `k / 3` by default).
pub fn lisi(knn: &Knn, codes: &[u32], n_codes: usize, perplexity: Option<f64>) -> Vec<f64> {
    let perplexity = perplexity.unwrap_or((knn.k / 3) as f64);
    (0..knn.n())
        .into_par_iter()
        .map(|i| {
            let (idx, dist) = knn.row(i);
            let d: Vec<f64> = dist.iter().map(|&x| x as f64).collect();
            let mask: Vec<bool> = idx.iter().map(|&j| j as usize != i).collect();
            let c: Vec<u32> = idx.iter().map(|&j| codes[j as usize]).collect();
            1.0 / simpson_one(&d, &mask, &c, n_codes, perplexity)
        })
        .collect()
}

/// `ilisi_knn`: median batch LISI scaled to [0, 1] by `(x - 1) / (n_batches - 1)`.
pub fn ilisi_knn(knn: &Knn, batches: &[u32], n_batches: usize) -> f64 {
    let l = nanmedian(&lisi(knn, batches, n_batches, None));
    (l - 1.0) / (n_batches as f64 - 1.0)
}

/// `clisi_knn`: median label LISI scaled to [0, 1] by `(n_labels - x) / (n_labels - 1)`.
pub fn clisi_knn(knn: &Knn, labels: &[u32], n_labels: usize) -> f64 {
    let l = nanmedian(&lisi(knn, labels, n_labels, None));
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
