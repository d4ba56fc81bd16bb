//! The dispersion flavors (seurat, cell_ranger) for one batch: binned normalized dispersions.

use super::*;

/// One batch of a dispersion flavor: means, dispersions, normalized dispersions and the
/// batch's selection, for the genes given (their mean and variance).
#[derive(Debug, Clone)]
pub struct DispersionFit {
    /// Per gene: ln(1 + mean) (seurat) or the mean (cell_ranger).
    pub means: Vec<f64>,
    /// Per gene: the dispersion.
    pub dispersions: Vec<f64>,
    /// Per gene: the dispersion normalized within its bin.
    pub dispersions_norm: Vec<f64>,
    /// Per gene: selected in this batch.
    pub selected: Vec<bool>,
}

/// scanpy's `_highly_variable_genes_single_batch` after the mean/variance step.
pub fn dispersion_fit(
    mean: &[f64],
    var: &[f64],
    flavor: Flavor,
    n_bins: usize,
    n_top: usize,
) -> DispersionFit {
    let n = mean.len();
    let mut means: Vec<f64> = mean
        .iter()
        .map(|&m| if m == 0.0 { 1e-12 } else { m })
        .collect();
    let mut disp: Vec<f64> = var.iter().zip(&means).map(|(v, m)| v / m).collect();
    if flavor == Flavor::Seurat {
        for d in disp.iter_mut() {
            *d = if *d == 0.0 { f64::NAN } else { d.ln() };
        }
        for m in means.iter_mut() {
            *m = m.ln_1p();
        }
    }
    if n == 0 {
        return DispersionFit {
            means,
            dispersions: disp,
            dispersions_norm: vec![],
            selected: vec![],
        };
    }
    let bins = if flavor == Flavor::Seurat {
        equal_width_bins(&means, n_bins)
    } else {
        percentile_bins(&means)
    };
    let nb = bins.iter().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); nb];
    for (g, &b) in bins.iter().enumerate() {
        members[b].push(g);
    }
    let (mut avg, mut dev) = (vec![f64::NAN; nb], vec![f64::NAN; nb]);
    for (b, m) in members.iter().enumerate() {
        if m.is_empty() {
            continue;
        }
        let vals = || m.iter().map(|&g| disp[g]);
        if flavor == Flavor::Seurat {
            avg[b] = kahan_mean(vals());
            dev[b] = welford_std(vals());
            if dev[b].is_nan() {
                dev[b] = avg[b];
                avg[b] = 0.0;
            }
        } else {
            let present: Vec<f64> = vals().filter(|v| !v.is_nan()).collect();
            avg[b] = np_median(present);
            dev[b] = mad(&vals().collect::<Vec<_>>());
        }
    }
    let norm: Vec<f64> = (0..n)
        .map(|g| (disp[g] - avg[bins[g]]) / dev[bins[g]])
        .collect();
    // the n-th highest non-NaN normalized dispersion
    let mut finite: Vec<f64> = norm.iter().cloned().filter(|v| !v.is_nan()).collect();
    let k = n_top.min(n).min(finite.len());
    let selected = if k == 0 {
        vec![false; n]
    } else {
        finite.sort_by(|a, b| b.total_cmp(a));
        let cut = finite[k - 1];
        norm.iter()
            .map(|&v| if v.is_nan() { f64::NEG_INFINITY } else { v } >= cut)
            .collect()
    };
    DispersionFit {
        means,
        dispersions: disp,
        dispersions_norm: norm,
        selected,
    }
}

/// Descending order of `a` and `b` with NaN last.
pub(super) fn desc_nan_last(a: f64, b: f64) -> Ordering {
    asc_nan_last(-a, -b)
}

/// Ascending order with NaN last.
pub(super) fn asc_nan_last(a: f64, b: f64) -> Ordering {
    (a.is_nan().cmp(&b.is_nan())).then_with(|| a.partial_cmp(&b).unwrap_or(Ordering::Equal))
}
