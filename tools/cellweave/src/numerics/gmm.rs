//! A two-component Gaussian mixture on the line, fitted by EM (what CLAIRE's refinement
//! fits to the cosine similarities of seed pairs).
//!
//! Deterministic: EM starts from the optimal two-means split of the sorted values. The
//! variance of each component is floored at `1e-6` (sklearn's `reg_covar`). Components are
//! reported in ascending order of their means, so component 1 is the "true pairs" one
//! (the paper's choice: the component with the larger mean).

use crate::{bail, Result};

/// A fitted mixture; index 0 has the lower mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Gmm {
    /// Mixing weights.
    pub weights: [f64; 2],
    /// Component means.
    pub means: [f64; 2],
    /// Component variances.
    pub variances: [f64; 2],
    /// Mean log-likelihood per value at the end.
    pub log_likelihood: f64,
    /// EM iterations run.
    pub iterations: usize,
    /// Whether the log-likelihood converged.
    pub converged: bool,
}

/// Variance floor (sklearn's `reg_covar`).
pub const REG_VAR: f64 = 1e-6;

impl Gmm {
    /// The overlap of the two weighted components, `integral of min(w0 f0, w1 f1)`: the
    /// share of values the mixture itself assigns to the wrong component by its own account
    /// (its Bayes error; 0 for components far apart relative to their spreads, up to 0.5 for
    /// identical ones). Midpoint rule on 20,000 points over the means +- 12 sd.
    pub fn overlap(&self) -> f64 {
        let sd = [self.variances[0].sqrt(), self.variances[1].sqrt()];
        let lo = (self.means[0] - 12.0 * sd[0]).min(self.means[1] - 12.0 * sd[1]);
        let hi = (self.means[0] + 12.0 * sd[0]).max(self.means[1] + 12.0 * sd[1]);
        let density = |c: usize, x: f64| {
            let z = (x - self.means[c]) / sd[c];
            self.weights[c] * (-0.5 * z * z).exp() / (sd[c] * (2.0 * std::f64::consts::PI).sqrt())
        };
        let n = 20_000;
        let h = (hi - lo) / n as f64;
        (0..n)
            .map(|i| {
                let x = lo + (i as f64 + 0.5) * h;
                density(0, x).min(density(1, x))
            })
            .sum::<f64>()
            * h
    }

    /// Posterior probability of each component for value `x`.
    pub fn posterior(&self, x: f64) -> [f64; 2] {
        let l0 = log_normal(x, self.means[0], self.variances[0]) + self.weights[0].ln();
        let l1 = log_normal(x, self.means[1], self.variances[1]) + self.weights[1].ln();
        let m = l0.max(l1);
        let (e0, e1) = ((l0 - m).exp(), (l1 - m).exp());
        [e0 / (e0 + e1), e1 / (e0 + e1)]
    }
}

fn log_normal(x: f64, mean: f64, var: f64) -> f64 {
    -0.5 * ((x - mean) * (x - mean) / var + var.ln() + (2.0 * std::f64::consts::PI).ln())
}

/// The split of sorted values into a low and a high group with the least within-group sum
/// of squares (exact 1-D two-means). Returns the size of the low group.
fn two_means_split(sorted: &[f64]) -> usize {
    let n = sorted.len();
    let total: f64 = sorted.iter().sum();
    let total_sq: f64 = sorted.iter().map(|v| v * v).sum();
    let (mut s, mut sq) = (0.0, 0.0);
    let (mut best, mut best_cost) = (n / 2, f64::INFINITY);
    for k in 1..n {
        s += sorted[k - 1];
        sq += sorted[k - 1] * sorted[k - 1];
        if sorted[k] == sorted[k - 1] {
            continue; // never split equal values
        }
        let (n1, n2) = (k as f64, (n - k) as f64);
        let cost = (sq - s * s / n1) + ((total_sq - sq) - (total - s) * (total - s) / n2);
        if cost < best_cost {
            best_cost = cost;
            best = k;
        }
    }
    best
}

/// Fit by EM until the mean log-likelihood improves by less than `tol` (or `max_iter`).
/// Needs at least two distinct finite values.
pub fn fit(values: &[f64], max_iter: usize, tol: f64) -> Result<Gmm> {
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        bail!("cannot fit a mixture to a non-finite value ({v})");
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.len() < 2 || sorted[0] == sorted[sorted.len() - 1] {
        bail!(
            "a two-component mixture needs at least two distinct values (got {} value(s))",
            values.len()
        );
    }
    let n = sorted.len() as f64;
    let k = two_means_split(&sorted);
    let stats = |part: &[f64]| {
        let m = part.iter().sum::<f64>() / part.len() as f64;
        let v = part.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / part.len() as f64;
        (m, v + REG_VAR)
    };
    let ((m0, v0), (m1, v1)) = (stats(&sorted[..k]), stats(&sorted[k..]));
    let mut g = Gmm {
        weights: [k as f64 / n, 1.0 - k as f64 / n],
        means: [m0, m1],
        variances: [v0, v1],
        log_likelihood: f64::NEG_INFINITY,
        iterations: 0,
        converged: false,
    };
    let mut prev = f64::NEG_INFINITY;
    for it in 1..=max_iter {
        // E step (with the log-likelihood of the current parameters)
        let (mut r_sum, mut rx, mut rxx) = ([0f64; 2], [0f64; 2], [0f64; 2]);
        let mut ll = 0.0;
        for &x in values {
            let l0 = log_normal(x, g.means[0], g.variances[0]) + g.weights[0].ln();
            let l1 = log_normal(x, g.means[1], g.variances[1]) + g.weights[1].ln();
            let m = l0.max(l1);
            let (e0, e1) = ((l0 - m).exp(), (l1 - m).exp());
            ll += m + (e0 + e1).ln();
            let r = [e0 / (e0 + e1), e1 / (e0 + e1)];
            for c in 0..2 {
                r_sum[c] += r[c];
                rx[c] += r[c] * x;
                rxx[c] += r[c] * x * x;
            }
        }
        ll /= n;
        g.log_likelihood = ll;
        g.iterations = it - 1;
        if (ll - prev).abs() < tol {
            g.converged = true;
            break;
        }
        prev = ll;
        // M step
        for c in 0..2 {
            let rc = r_sum[c].max(10.0 * f64::EPSILON);
            let mean = rx[c] / rc;
            g.weights[c] = rc / n;
            g.means[c] = mean;
            g.variances[c] = (rxx[c] / rc - mean * mean).max(0.0) + REG_VAR;
        }
        g.iterations = it;
    }
    if g.means[0] > g.means[1] {
        g.weights.swap(0, 1);
        g.means.swap(0, 1);
        g.variances.swap(0, 1);
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// Draws of two normals, each `(mean, sd, count)`, the first's before the second's.
    fn two_normals(seed: u64, a: (f64, f64, usize), b: (f64, f64, usize)) -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut x = Vec::new();
        for (mean, sd, n) in [a, b] {
            let d = Normal::new(mean, sd).unwrap();
            x.extend((0..n).map(|_| d.sample(&mut rng)));
        }
        x
    }

    #[test]
    fn recovers_a_known_mixture() {
        // 30% "false" pairs around 0.2 (sd 0.1), 70% "true" pairs around 0.8 (sd 0.05)
        let x = two_normals(7, (0.2, 0.1, 3000), (0.8, 0.05, 7000));
        let g = fit(&x, 500, 1e-8).unwrap();
        assert!(g.converged);
        assert!((g.weights[1] - 0.7).abs() < 0.02, "{g:?}");
        assert!(
            (g.means[0] - 0.2).abs() < 0.01 && (g.means[1] - 0.8).abs() < 0.005,
            "{g:?}"
        );
        assert!(
            (g.variances[0].sqrt() - 0.1).abs() < 0.01
                && (g.variances[1].sqrt() - 0.05).abs() < 0.005,
            "{g:?}"
        );
        // posteriors: near certain far from the boundary, sum to one
        let p = g.posterior(0.9);
        assert!(p[1] > 0.999 && (p[0] + p[1] - 1.0).abs() < 1e-12);
        assert!(g.posterior(0.1)[0] > 0.999);
        // same input, same answer; order of the input does not matter
        let mut rev = x.clone();
        rev.reverse();
        let g2 = fit(&rev, 500, 1e-8).unwrap();
        assert!((g2.means[1] - g.means[1]).abs() < 1e-9);
        assert_eq!(fit(&x, 500, 1e-8).unwrap(), g);
    }

    #[test]
    fn overlapping_components_and_bad_input() {
        let x = two_normals(8, (0.0, 1.0, 20000), (2.0, 1.0, 20000));
        let g = fit(&x, 1000, 1e-10).unwrap();
        assert!(
            (g.means[0]).abs() < 0.1 && (g.means[1] - 2.0).abs() < 0.1,
            "{g:?}"
        );
        assert!((g.weights[0] - 0.5).abs() < 0.05);
        assert!(fit(&[1.0, 1.0, 1.0], 100, 1e-8).is_err());
        assert!(fit(&[1.0], 100, 1e-8).is_err());
        assert!(fit(&[1.0, f64::NAN], 100, 1e-8).is_err());
        // two distinct values: two tight components
        let g = fit(&[0.0, 0.0, 1.0, 1.0, 1.0], 100, 1e-10).unwrap();
        assert!((g.means[0]).abs() < 1e-6 && (g.means[1] - 1.0).abs() < 1e-6);
        assert!((g.weights[1] - 0.6).abs() < 1e-6);
    }
}
