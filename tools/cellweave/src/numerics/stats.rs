//! Small statistics the metrics share: partition agreement (NMI, ARI), the chi-square tail,
//! medians, the cells of each label.

/// The number of codes `0..=max` in a coding (0 when empty).
pub fn n_codes(codes: &[u32]) -> usize {
    codes
        .iter()
        .copied()
        .max()
        .map(|m| m as usize + 1)
        .unwrap_or(0)
}

/// The cells of each label `0..n_labels` that has any, in label order: (label, cells in
/// increasing order).
pub fn label_groups(labels: &[u32], n_labels: usize) -> Vec<(usize, Vec<usize>)> {
    let mut groups = vec![Vec::new(); n_labels];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(g) = groups.get_mut(l as usize) {
            g.push(i);
        }
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .collect()
}

/// Contingency table of two labelings (values `0..na`, `0..nb`), row-major `na x nb`.
fn contingency(a: &[u32], b: &[u32]) -> (Vec<f64>, usize, usize) {
    let (na, nb) = (n_codes(a), n_codes(b));
    let mut t = vec![0f64; na * nb];
    for (&x, &y) in a.iter().zip(b) {
        t[x as usize * nb + y as usize] += 1.0;
    }
    (t, na, nb)
}

fn entropy(counts: &[f64], n: f64) -> f64 {
    counts
        .iter()
        .filter(|&&c| c > 0.0)
        .map(|&c| -(c / n) * (c / n).ln())
        .sum()
}

/// Normalized mutual information with the arithmetic-mean normalisation
/// (scikit-learn's `normalized_mutual_info_score(average_method="arithmetic")`).
pub fn nmi(a: &[u32], b: &[u32]) -> f64 {
    let n = a.len() as f64;
    let (t, na, nb) = contingency(a, b);
    let ra: Vec<f64> = (0..na)
        .map(|i| t[i * nb..(i + 1) * nb].iter().sum())
        .collect();
    let rb: Vec<f64> = (0..nb)
        .map(|j| (0..na).map(|i| t[i * nb + j]).sum())
        .collect();
    let used_a = ra.iter().filter(|&&c| c > 0.0).count();
    let used_b = rb.iter().filter(|&&c| c > 0.0).count();
    // Both labelings trivial (one class each): a perfect match by convention.
    if used_a == used_b && (used_a <= 1) {
        return 1.0;
    }
    let mut mi = 0.0;
    for i in 0..na {
        for j in 0..nb {
            let c = t[i * nb + j];
            if c > 0.0 {
                mi += (c / n) * ((c * n) / (ra[i] * rb[j])).ln();
            }
        }
    }
    let (ha, hb) = (entropy(&ra, n), entropy(&rb, n));
    let norm = ((ha + hb) / 2.0).max(f64::EPSILON);
    (mi.max(0.0) / norm).min(1.0)
}

/// Adjusted Rand index (Hubert & Arabie).
pub fn ari(a: &[u32], b: &[u32]) -> f64 {
    let n = a.len() as f64;
    let (t, na, nb) = contingency(a, b);
    let comb2 = |x: f64| x * (x - 1.0) / 2.0;
    let sum_ij: f64 = t.iter().map(|&c| comb2(c)).sum();
    let sum_a: f64 = (0..na)
        .map(|i| comb2(t[i * nb..(i + 1) * nb].iter().sum()))
        .sum();
    let sum_b: f64 = (0..nb)
        .map(|j| comb2((0..na).map(|i| t[i * nb + j]).sum()))
        .sum();
    let total = comb2(n);
    if total == 0.0 {
        return 1.0;
    }
    let expected = sum_a * sum_b / total;
    let max_index = (sum_a + sum_b) / 2.0;
    if (max_index - expected).abs() < f64::EPSILON * total.max(1.0) {
        // Both partitions trivial in the same way (all together or all apart).
        return 1.0;
    }
    (sum_ij - expected) / (max_index - expected)
}

/// Median of the finite values (NaN when none): numpy's `nanmedian`.
pub fn nanmedian(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    median(&mut v)
}

/// Median of `v` (NaN when empty), sorting it in place (by `total_cmp`: NaNs are not left
/// out, see [`nanmedian`]).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Mean of the non-NaN values (NaN when none): numpy's `nanmean`.
pub fn nanmean(values: &[f64]) -> f64 {
    let v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, 9 terms; ~1e-15 relative).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1-x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, &c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized lower incomplete gamma function P(a, x) (series below a + 1, continued
/// fraction above, both to ~1e-15).
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x.is_infinite() {
        return 1.0;
    }
    let log_pre = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // P = x^a e^-x / Γ(a+1) Σ x^n / ((a+1)...(a+n))
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut ap = a;
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (sum.ln() + log_pre).exp().min(1.0)
    } else {
        // Q = x^a e^-x / Γ(a) * 1/(x+1-a- 1(1-a)/(x+3-a- 2(2-a)/(x+5-a- ...))) (modified Lentz)
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        1.0 - (log_pre + h.ln()).exp()
    }
}

/// Upper tail of the chi-square distribution: `1 - cdf(x; df)`.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    1.0 - gamma_p(df / 2.0, x / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_scores() {
        let a = [0, 0, 0, 1, 1, 1];
        let b = [1, 1, 1, 0, 0, 0];
        assert!((nmi(&a, &b) - 1.0).abs() < 1e-12);
        assert!((ari(&a, &b) - 1.0).abs() < 1e-12);
        // scikit-learn: ARI([0,0,1,1],[0,0,1,2]) = 0.5714285714, NMI = 0.8
        assert!((ari(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.571_428_571_428_571_4).abs() < 1e-12);
        assert!((nmi(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.8).abs() < 1e-12);
        // Independent labelings.
        assert!(nmi(&[0, 0, 1, 1], &[0, 1, 0, 1]).abs() < 1e-12);
    }

    #[test]
    fn chi_square_tail() {
        // scipy.stats.chi2.sf: (3.84145882, 1) = 0.05; (5.99146455, 2) = 0.05; (10, 4) = 0.040427681
        assert!((chi2_sf(3.841_458_820_694_124, 1.0) - 0.05).abs() < 1e-10);
        assert!((chi2_sf(5.991_464_547_107_979, 2.0) - 0.05).abs() < 1e-10);
        assert!((chi2_sf(10.0, 4.0) - 0.040_427_681_994_512_8).abs() < 1e-10);
        assert!((chi2_sf(0.5, 3.0) - 0.918_891_411_654_676_1).abs() < 1e-10);
        assert_eq!(chi2_sf(0.0, 2.0), 1.0);
        assert!((ln_gamma(10.0) - 362_880f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn medians() {
        assert_eq!(nanmedian(&[3.0, f64::NAN, 1.0, 2.0]), 2.0);
        assert_eq!(nanmedian(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(nanmean(&[f64::NAN]).is_nan());
    }
}
