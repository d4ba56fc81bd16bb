//! Bins and robust statistics as numpy and pandas compute them (linspace, cut, percentiles, Kahan means, Welford deviations, median, MAD).

use super::*;

/// scanpy's `_get_mean_var`: mean and unbiased variance of the genes `genes`.
pub(super) fn mean_var(m: &Moments, genes: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let n = m.n as f64;
    let factor = if m.n != 1 { n / (n - 1.0) } else { 1.0 };
    let mean: Vec<f64> = genes.iter().map(|&g| m.sum[g] / n).collect();
    let var = genes
        .iter()
        .zip(&mean)
        .map(|(&g, &mu)| {
            let v = m.sumsq[g] / n - mu * mu;
            if m.n != 1 {
                v * factor
            } else {
                v
            }
        })
        .collect();
    (mean, var)
}

/// numpy's `linspace(start, stop, num)`.
pub(super) fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut y: Vec<f64> = (0..num)
        .map(|i| {
            if step == 0.0 {
                i as f64 / div * delta + start
            } else {
                i as f64 * step + start
            }
        })
        .collect();
    y[num - 1] = stop;
    y
}

/// `pandas.cut(x, bins=n)` codes (0-based bin of every value).
pub fn equal_width_bins(x: &[f64], n: usize) -> Vec<usize> {
    let mut mn = x.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut mx = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let edges = if mn == mx {
        mn -= if mn != 0.0 { 0.001 * mn.abs() } else { 0.001 };
        mx += if mx != 0.0 { 0.001 * mx.abs() } else { 0.001 };
        linspace(mn, mx, n + 1)
    } else {
        let mut e = linspace(mn, mx, n + 1);
        e[0] -= (mx - mn) * 0.001;
        e
    };
    cut_codes(x, &edges)
}

/// Right-closed bins (`edges[k] < x <= edges[k+1]` is bin k), as `searchsorted(side='left') - 1`.
pub(super) fn cut_codes(x: &[f64], edges: &[f64]) -> Vec<usize> {
    x.iter()
        .map(|&v| {
            let k = edges.partition_point(|&e| e < v);
            k.clamp(1, edges.len() - 1) - 1
        })
        .collect()
}

/// numpy's `percentile(x, q)` with linear interpolation.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let virt = (n - 1) as f64 * (q / 100.0);
    if virt >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if virt < 0.0 {
        return sorted[0];
    }
    let prev = virt.floor();
    let gamma = virt - prev;
    let (a, b) = (sorted[prev as usize], sorted[prev as usize + 1]);
    let d = b - a;
    if gamma >= 0.5 {
        b - d * (1.0 - gamma)
    } else {
        a + d * gamma
    }
}

/// Bins of `cell_ranger`: edges -inf, the 10th, 15th, ..., 100th percentiles, +inf
/// (duplicate edges dropped).
pub(super) fn percentile_bins(x: &[f64]) -> Vec<usize> {
    let mut sorted = x.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mut edges = vec![f64::NEG_INFINITY];
    edges.extend((10..=100).step_by(5).map(|q| percentile(&sorted, q as f64)));
    edges.push(f64::INFINITY);
    edges.dedup();
    cut_codes(x, &edges)
}

/// pandas' groupby mean (Kahan-compensated), skipping NaN.
pub(super) fn kahan_mean(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut comp, mut n) = (0f64, 0f64, 0usize);
    for v in vals.filter(|v| !v.is_nan()) {
        n += 1;
        let y = v - comp;
        let t = sum + y;
        comp = t - sum - y;
        if comp.is_nan() {
            comp = 0.0;
        }
        sum = t;
    }
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// pandas' groupby std (Welford, ddof 1), skipping NaN.
pub(super) fn welford_std(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut m2, mut n) = (0f64, 0f64, 0usize);
    for v in vals.filter(|v| !v.is_nan()) {
        n += 1;
        let old = mean;
        mean += (v - old) / n as f64;
        m2 += (v - mean) * (v - old);
    }
    if n <= 1 {
        f64::NAN
    } else {
        (m2 / (n - 1) as f64).sqrt()
    }
}

/// numpy's median (NaN if any value is NaN, as `np.median`).
pub(super) fn np_median(mut v: Vec<f64>) -> f64 {
    if v.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    crate::numerics::stats::median(&mut v)
}

/// statsmodels' `mad` (center = median, scaled by 1/Phi^-1(3/4)).
pub(super) fn mad(v: &[f64]) -> f64 {
    const C: f64 = 0.6744897501960817;
    let center = np_median(v.to_vec());
    np_median(v.iter().map(|x| (x - center).abs() / C).collect())
}
