//! Principal component regression on the batch (Büttner et al. 2019), scib-metrics'
//! `pcr_comparison`.
//!
//! scib-metrics regresses every principal component (all of them) on the one-hot batch and
//! weights the R² by the component's variance: `Σ_c R²_c var_c / Σ_c var_c`. Because the
//! components form a full rotation of the centred data and the regression of a centred
//! coordinate on the batch is the projection onto the batch means, this equals the share of
//! the total variance that lies between batch means, `tr(S_between) / tr(S_total)`, which is
//! computed here directly (no SVD).

/// Variance share between batch means of `n x d` rows (row-major).
pub fn pcr(x: &[f32], d: usize, batches: &[u32]) -> f64 {
    let n = batches.len();
    let nb = crate::numerics::stats::n_codes(batches);
    let mut mean = vec![0f64; d];
    let mut bmean = vec![0f64; nb * d];
    let mut cnt = vec![0f64; nb];
    for i in 0..n {
        let b = batches[i] as usize;
        cnt[b] += 1.0;
        for (j, &v) in x[i * d..(i + 1) * d].iter().enumerate() {
            mean[j] += v as f64;
            bmean[b * d + j] += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut total = 0f64;
    for i in 0..n {
        for (j, &v) in x[i * d..(i + 1) * d].iter().enumerate() {
            total += (v as f64 - mean[j]).powi(2);
        }
    }
    let mut between = 0f64;
    for b in 0..nb {
        if cnt[b] == 0.0 {
            continue;
        }
        for j in 0..d {
            between += cnt[b] * (bmean[b * d + j] / cnt[b] - mean[j]).powi(2);
        }
    }
    if total > 0.0 {
        between / total
    } else {
        0.0
    }
}

/// `pcr_comparison`: `(pcr(pre) - pcr(post)) / pcr(pre)`, floored at 0.
pub fn pcr_comparison(
    pre: &[f32],
    d_pre: usize,
    post: &[f32],
    d_post: usize,
    batches: &[u32],
) -> f64 {
    let a = pcr(pre, d_pre, batches);
    let b = pcr(post, d_post, batches);
    if a <= 0.0 {
        return 0.0;
    }
    ((a - b) / a).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn between_share() {
        // batch 0 at x = 0 +- 1, batch 1 at x = 10 +- 1: between = 4 * 25 = 100, total 104.
        let x = [-1.0f32, 1.0, 9.0, 11.0];
        let b = [0u32, 0, 1, 1];
        assert!((pcr(&x, 1, &b) - 100.0 / 104.0).abs() < 1e-12);
        assert_eq!(pcr_comparison(&x, 1, &x, 1, &b), 0.0);
        let mixed = [-1.0f32, 9.0, 1.0, 11.0];
        assert!((pcr_comparison(&x, 1, &mixed, 1, &b) - (1.0 - 4.0 / 100.0)).abs() < 1e-12);
    }
}
