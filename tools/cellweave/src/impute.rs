//! Imputation of dropout zeros, everything but the neural model: the value scale LATE
//! trains on, the baselines users compare against (each gene's mean of its observed
//! values; kNN smoothing in PCA space), writing dense imputed rows into a cells table,
//! and the held-out evaluation (MSE on the log10(x+1) scale, median Pearson correlation
//! per gene and per cell) that `../shared/reference/tools/impute_eval.py` defines.
//!
//! Matrices here are dense row-major `f32` (`n_cells x n_genes`) unless they are a [`Csr`].

use crate::contract::{rows_of, CellsTable, Csr, ValueKind};
use crate::numerics::neighbors::{knn, Metric};
use crate::{bail, Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How the zeros are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// LATE autoencoder (TRANSLATE with an initial model).
    Late,
    /// Each gene's mean of its observed values.
    GeneMean,
    /// Average over the nearest cells in PCA space.
    Knn,
}

impl Method {
    /// The name `--method` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Late => "late",
            Method::GeneMean => "gene-mean",
            Method::Knn => "knn",
        }
    }
}

/// The scale the model sees and the output is written on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// log10(x + 1), LATE's default.
    Log10,
    /// ln(x + 1).
    Log1p,
}

impl Scale {
    /// The name `--scale` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Scale::Log10 => "log10",
            Scale::Log1p => "log1p",
        }
    }
    /// The scale of a name, `None` for an unknown one.
    pub fn parse(s: &str) -> Option<Scale> {
        match s {
            "log10" => Some(Scale::Log10),
            "log1p" => Some(Scale::Log1p),
            _ => None,
        }
    }
    /// Counts (or normalized values) to this scale.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Scale::Log10 => (x as f64 + 1.0).log10() as f32,
            Scale::Log1p => (x as f64).ln_1p() as f32,
        }
    }
    /// A value on this scale to log10(x + 1) (the evaluation scale).
    #[inline]
    pub fn to_log10(self, v: f32) -> f32 {
        match self {
            Scale::Log10 => v,
            Scale::Log1p => (v as f64 / std::f64::consts::LN_10) as f32,
        }
    }
}

/// The expression values of `cells` on `scale`: raw counts (or normalized, unlogged
/// values) are transformed; values already on that scale are used as they are.
pub fn scaled_values(cells: &CellsTable, scale: Scale) -> Result<Csr> {
    let ready = matches!(
        (cells.values, scale),
        (ValueKind::Log10p, Scale::Log10) | (ValueKind::Log1p, Scale::Log1p)
    );
    if !ready && !matches!(cells.values, ValueKind::Counts | ValueKind::Normalized) {
        return Err(Error::new(format!(
            "the values are '{}' but imputation needs raw counts (or values already on the {} scale)",
            cells.values.as_str(),
            scale.as_str()
        ))
        .field("values"));
    }
    if let Some(v) = cells.x.data.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return Err(
            Error::new(format!("value {v} (expected finite, non-negative values)")).field("values"),
        );
    }
    let mut x = cells.x.clone();
    if !ready {
        x.data.par_iter_mut().for_each(|v| *v = scale.apply(*v));
    }
    Ok(x)
}

/// Each gene's mean of its observed (non-zero) values; 0 for a gene never observed.
pub fn observed_gene_means(x: &Csr) -> Vec<f32> {
    let mut sum = vec![0f64; x.n_cols];
    let mut cnt = vec![0u64; x.n_cols];
    for (&c, &v) in x.indices.iter().zip(&x.data) {
        if v != 0.0 {
            sum[c as usize] += v as f64;
            cnt[c as usize] += 1;
        }
    }
    sum.iter()
        .zip(&cnt)
        .map(|(&s, &n)| if n > 0 { (s / n as f64) as f32 } else { 0.0 })
        .collect()
}

/// Baseline: every zero becomes its gene's mean of observed values; observed values stay.
pub fn impute_gene_mean(x: &Csr) -> Vec<f32> {
    let means = observed_gene_means(x);
    let g = x.n_cols;
    let mut out: Vec<f32> = Vec::with_capacity(x.n_rows() * g);
    for _ in 0..x.n_rows() {
        out.extend_from_slice(&means);
    }
    keep_observed(x, &mut out);
    out
}

/// Scores of the rows of `x` (centered per gene) on its top `k` principal axes, `n x k`
/// row-major. Exact: eigenvectors of the gene covariance (genes x genes).
pub fn pca_scores(x: &Csr, k: usize) -> Result<Vec<f32>> {
    let (n, g) = (x.n_rows(), x.n_cols);
    let k = k.min(n.saturating_sub(1)).min(g);
    if k == 0 {
        bail!("too few cells or genes for a PCA ({n} cells, {g} genes)");
    }
    let dense = x.to_dense();
    let mut mean = vec![0f64; g];
    for row in dense.chunks(g) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let xc = faer::Mat::<f64>::from_fn(n, g, |i, j| dense[i * g + j] as f64 - mean[j]);
    let cov = xc.transpose() * &xc;
    let evd = cov
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| Error::new(format!("PCA eigendecomposition failed ({e:?})")))?;
    // Eigenvalues ascend: the last k columns are the top axes (largest first below).
    let u = evd.U();
    let axes = faer::Mat::<f64>::from_fn(g, k, |i, j| {
        let col = g - 1 - j;
        // Sign convention: the largest-magnitude loading is positive (stable output).
        let (mut best, mut sign) = (0.0f64, 1.0f64);
        for r in 0..g {
            let v = u[(r, col)];
            if v.abs() > best {
                best = v.abs();
                sign = v.signum();
            }
        }
        u[(i, col)] * sign
    });
    let scores = &xc * &axes;
    let mut out = vec![0f32; n * k];
    for i in 0..n {
        for j in 0..k {
            out[i * k + j] = scores[(i, j)] as f32;
        }
    }
    Ok(out)
}

/// Baseline (MAGIC-like, one diffusion step): each cell becomes the average of its `k`
/// nearest cells (itself included) in the `n_pcs`-dimensional PCA of the input values, as
/// `impute_eval.py` computes it. Every entry is replaced (observed values too).
pub fn impute_knn_smoothing(x: &Csr, k: usize, n_pcs: usize) -> Result<Vec<f32>> {
    let (n, g) = (x.n_rows(), x.n_cols);
    if k == 0 {
        bail!("--knn must be at least 1");
    }
    let scores = pca_scores(x, n_pcs)?;
    let d = scores.len() / n.max(1);
    let nn = knn(&scores, d, k.min(n), Metric::Euclidean, true);
    let mut out = vec![0f32; n * g];
    out.par_chunks_mut(g.max(1))
        .enumerate()
        .for_each(|(q, row)| {
            let (idx, _) = nn.row(q);
            let mut acc = vec![0f64; g];
            for &j in idx {
                let (ci, cv) = x.row(j as usize);
                for (&c, &v) in ci.iter().zip(cv) {
                    acc[c as usize] += v as f64;
                }
            }
            let inv = 1.0 / idx.len() as f64;
            for (o, a) in row.iter_mut().zip(&acc) {
                *o = (a * inv) as f32;
            }
        });
    Ok(out)
}

/// `--only-zeros`: put the observed (non-zero) input values back, bit for bit.
pub fn keep_observed(x: &Csr, dense: &mut [f32]) {
    let g = x.n_cols;
    dense
        .par_chunks_mut(g.max(1))
        .enumerate()
        .for_each(|(r, row)| {
            let (idx, val) = x.row(r);
            for (&c, &v) in idx.iter().zip(val) {
                if v != 0.0 {
                    row[c as usize] = v;
                }
            }
        });
}

/// A cells table like `template` whose expression is the dense `values` (every entry stored,
/// zeros included, in the CSR layout), marked [`ValueKind::Imputed`].
pub fn dense_cells(template: &CellsTable, values: Vec<f32>) -> Result<CellsTable> {
    let (n, g) = (template.n_cells(), template.n_genes());
    if values.len() != n * g {
        bail!("{} imputed values for {n} cells x {g} genes", values.len());
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        bail!("the imputation produced a non-finite value ({v})");
    }
    let indptr: Vec<u64> = (0..=n as u64).map(|r| r * g as u64).collect();
    let indices: Vec<u32> = (0..n).flat_map(|_| 0..g as u32).collect();
    let mut t = template.clone();
    t.x = Csr {
        n_cols: g,
        indptr,
        indices,
        data: values,
    };
    t.values = ValueKind::Imputed;
    Ok(t)
}

/// Held-out evaluation, LATE-style (as `impute_eval.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    /// The imputation method evaluated.
    pub method: String,
    /// Mean squared error over the held-out entries (truth > 0, input == 0), log10(x+1) scale.
    pub mse_heldout: f64,
    /// Held-out entries.
    pub n_heldout: u64,
    /// Median over genes of the Pearson correlation between truth and imputed values over the
    /// cells where the truth is non-zero (genes with > 2 such cells and non-constant values).
    pub median_pearson_gene: Option<f64>,
    /// The same per cell, over the genes where the truth is non-zero.
    pub median_pearson_cell: Option<f64>,
    /// Genes with a Pearson correlation in `median_pearson_gene`.
    pub n_genes_scored: u64,
    /// Cells with a Pearson correlation in `median_pearson_cell`.
    pub n_cells_scored: u64,
}

/// Pearson correlation of paired values; None when either side is constant.
fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    (!v.is_empty()).then(|| crate::numerics::stats::median(&mut v))
}

/// Evaluate `imputed` (dense, log10(x+1) scale) against `truth` and the imputation input
/// `masked` (both log10(x+1), same cells and genes in the same order).
pub fn evaluate(method: &str, truth: &Csr, masked: &Csr, imputed: &[f32]) -> Result<HeldOut> {
    let (n, g) = (truth.n_rows(), truth.n_cols);
    if masked.n_rows() != n || masked.n_cols != g || imputed.len() != n * g {
        bail!(
            "shapes differ: truth {n} x {g}, input {} x {}, imputed {} values",
            masked.n_rows(),
            masked.n_cols,
            imputed.len()
        );
    }
    let t = truth.to_dense();
    let m = masked.to_dense();
    let (mut se, mut held) = (0f64, 0u64);
    for ((&tv, &mv), &yv) in t.iter().zip(&m).zip(imputed) {
        if tv > 0.0 && mv == 0.0 {
            let d = yv as f64 - tv as f64;
            se += d * d;
            held += 1;
        }
    }
    // Pearson over the truth's non-zero entries of one gene (stride g) or one cell (stride 1).
    let pearson_line = |start: usize, stride: usize, len: usize| {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for e in (0..len).map(|x| start + x * stride) {
            if t[e] > 0.0 {
                a.push(t[e] as f64);
                b.push(imputed[e] as f64);
            }
        }
        (a.len() > 2).then(|| pearson(&a, &b)).flatten()
    };
    let per_gene: Vec<f64> = (0..g)
        .into_par_iter()
        .filter_map(|j| pearson_line(j, g, n))
        .collect();
    let per_cell: Vec<f64> = (0..n)
        .into_par_iter()
        .filter_map(|i| pearson_line(i * g, 1, g))
        .collect();
    Ok(HeldOut {
        method: method.to_string(),
        mse_heldout: if held > 0 { se / held as f64 } else { f64::NAN },
        n_heldout: held,
        n_genes_scored: per_gene.len() as u64,
        n_cells_scored: per_cell.len() as u64,
        median_pearson_gene: median(per_gene),
        median_pearson_cell: median(per_cell),
    })
}

/// What [`evaluate`] leaves out (not in `impute_eval.py`): the Pearson medians restricted to
/// the held-out entries (the reference's include the observed entries, which an imputation
/// that keeps them gets right for free), and how well the differences between batches
/// survive at the held-out entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutDetail {
    /// Median over genes of the Pearson correlation over the gene's held-out entries (genes
    /// with > 2 of them and non-constant values; a gene-mean fill is constant: none).
    pub median_pearson_gene_heldout: Option<f64>,
    /// The same per cell, over the cell's held-out entries.
    pub median_pearson_cell_heldout: Option<f64>,
    /// With two or more batches: per gene and batch, the batch's mean over its held-out
    /// entries minus the mean of those batch means ("batch effect"), truth and imputed.
    /// `batch_effect_r` is the Pearson correlation of the imputed effects with the true ones
    /// over all (gene, batch) pairs, `batch_effect_slope` the least-squares slope through
    /// the origin of imputed on true effects: 1 keeps the differences between batches, 0
    /// smears them out (a gene-mean fill: 0).
    pub batch_effect_r: Option<f64>,
    /// See `batch_effect_r`.
    pub batch_effect_slope: Option<f64>,
    /// Genes with at least [`MIN_HELDOUT_PER_BATCH`] held-out entries in every batch.
    pub n_genes_batch_effect: u64,
}

/// Held-out entries a gene needs in every batch to enter the batch-effect scores.
pub const MIN_HELDOUT_PER_BATCH: usize = 5;

/// The scores of [`HeldOutDetail`]; `batches` are per-cell codes below `n_batches` (others
/// are left out of the batch-effect scores), arguments otherwise as [`evaluate`].
pub fn evaluate_detail(
    truth: &Csr,
    masked: &Csr,
    imputed: &[f32],
    batches: Option<(&[u32], usize)>,
) -> Result<HeldOutDetail> {
    let (n, g) = (truth.n_rows(), truth.n_cols);
    if masked.n_rows() != n || masked.n_cols != g || imputed.len() != n * g {
        bail!("shapes of the truth, input and imputed values differ");
    }
    let t = truth.to_dense();
    let m = masked.to_dense();
    let held = |k: usize| t[k] > 0.0 && m[k] == 0.0;
    let corr_over = |ks: &mut dyn Iterator<Item = usize>| {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for k in ks.filter(|&k| held(k)) {
            a.push(t[k] as f64);
            b.push(imputed[k] as f64);
        }
        (a.len() > 2).then(|| pearson(&a, &b)).flatten()
    };
    let per_gene: Vec<f64> = (0..g)
        .into_par_iter()
        .filter_map(|j| corr_over(&mut (0..n).map(|i| i * g + j)))
        .collect();
    let per_cell: Vec<f64> = (0..n)
        .into_par_iter()
        .filter_map(|i| corr_over(&mut (i * g..(i + 1) * g)))
        .collect();
    let (mut te, mut ye) = (Vec::new(), Vec::new());
    if let Some((codes, nb)) = batches.filter(|(c, nb)| *nb >= 2 && c.len() == n) {
        for j in 0..g {
            let (mut ts, mut ys, mut cnt) = (vec![0f64; nb], vec![0f64; nb], vec![0usize; nb]);
            for (i, &c) in codes.iter().enumerate() {
                let k = i * g + j;
                if (c as usize) < nb && held(k) {
                    ts[c as usize] += t[k] as f64;
                    ys[c as usize] += imputed[k] as f64;
                    cnt[c as usize] += 1;
                }
            }
            if cnt.iter().any(|&c| c < MIN_HELDOUT_PER_BATCH) {
                continue;
            }
            let tm: Vec<f64> = ts.iter().zip(&cnt).map(|(s, &c)| s / c as f64).collect();
            let ym: Vec<f64> = ys.iter().zip(&cnt).map(|(s, &c)| s / c as f64).collect();
            let (tc, yc) = (
                tm.iter().sum::<f64>() / nb as f64,
                ym.iter().sum::<f64>() / nb as f64,
            );
            te.extend(tm.iter().map(|v| v - tc));
            ye.extend(ym.iter().map(|v| v - yc));
        }
    }
    let tt: f64 = te.iter().map(|v| v * v).sum();
    let ty: f64 = te.iter().zip(&ye).map(|(a, b)| a * b).sum();
    let n_genes_batch_effect = match batches {
        Some((_, nb)) if nb >= 2 => (te.len() / nb) as u64,
        _ => 0,
    };
    Ok(HeldOutDetail {
        median_pearson_gene_heldout: median(per_gene),
        median_pearson_cell_heldout: median(per_cell),
        batch_effect_r: pearson(&te, &ye).filter(|_| te.len() > 2),
        batch_effect_slope: (tt > 0.0).then(|| ty / tt),
        n_genes_batch_effect,
    })
}

/// The truth table's values for the given cells and genes (by id), in that order, on the
/// log10(x+1) scale. Errors name the first cell or gene the truth lacks.
pub fn aligned_truth(truth: &CellsTable, cell_ids: &[String], gene_ids: &[String]) -> Result<Csr> {
    let x = scaled_values(truth, Scale::Log10)?;
    let rows = rows_of(cell_ids, &truth.cell_ids).map_err(|(_, c)| {
        Error::new(format!(
            "cell '{c}' of the imputed table is not in the truth"
        ))
        .field("cell_id")
    })?;
    let cols = rows_of(gene_ids, &truth.gene_ids).map_err(|(_, g)| {
        Error::new(format!(
            "gene '{g}' of the imputed table is not in the truth"
        ))
        .field("gene_ids")
    })?;
    Ok(x.select_rows(&rows).select_cols(&cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(rows: &[&[f32]]) -> Csr {
        let g = rows[0].len();
        let dense: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Csr::from_dense(rows.len(), g, &dense)
    }

    #[test]
    fn gene_mean_fills_zeros_only() {
        let x = csr(&[&[1.0, 0.0, 2.0], &[3.0, 0.0, 0.0], &[0.0, 0.0, 4.0]]);
        assert_eq!(observed_gene_means(&x), vec![2.0, 0.0, 3.0]);
        let y = impute_gene_mean(&x);
        assert_eq!(y, vec![1.0, 0.0, 2.0, 3.0, 0.0, 3.0, 2.0, 0.0, 4.0]);
    }

    #[test]
    fn knn_with_k1_is_identity() {
        let x = csr(&[
            &[1.0, 0.0, 2.0],
            &[3.0, 0.0, 0.0],
            &[0.0, 5.0, 4.0],
            &[0.0, 1.0, 1.0],
        ]);
        let y = impute_knn_smoothing(&x, 1, 2).unwrap();
        assert_eq!(y, x.to_dense());
        // k = n averages everything.
        let y = impute_knn_smoothing(&x, 4, 2).unwrap();
        assert!(
            (y[0] - 1.0).abs() < 1e-6 && (y[1] - 1.5).abs() < 1e-6 && (y[2] - 1.75).abs() < 1e-6
        );
    }

    #[test]
    fn pearson_and_median() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[1.0, 1.0, 1.0]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), Some(2.5));
    }

    #[test]
    fn evaluation_counts_held_out_entries() {
        let t = csr(&[
            &[1.0, 2.0, 3.0, 0.5],
            &[2.0, 0.0, 1.0, 1.0],
            &[3.0, 1.0, 2.0, 2.0],
        ]);
        let m = csr(&[
            &[1.0, 0.0, 3.0, 0.0],
            &[0.0, 0.0, 1.0, 1.0],
            &[3.0, 1.0, 0.0, 2.0],
        ]);
        let perfect = t.to_dense();
        let r = evaluate("x", &t, &m, &perfect).unwrap();
        assert_eq!(r.n_heldout, 4);
        assert_eq!(r.mse_heldout, 0.0);
        assert!((r.median_pearson_gene.unwrap() - 1.0).abs() < 1e-9);
        let zero = m.to_dense();
        let r = evaluate("none", &t, &m, &zero).unwrap();
        assert!((r.mse_heldout - (4.0 + 0.25 + 4.0 + 4.0) / 4.0).abs() < 1e-9);
    }

    #[test]
    fn detail_scores_held_out_entries_and_batch_effects() {
        // 24 cells x 3 genes, all non-zero in the truth; batch 1 is higher by 0.5 + 0.2 j.
        let (n, g) = (24, 3);
        let codes: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
        let tv: Vec<f32> = (0..n * g)
            .map(|k| {
                let (i, j) = (k / g, k % g);
                1.0 + ((i * 7 + j * 3) % 5) as f32 * 0.3 + codes[i] as f32 * (0.5 + 0.2 * j as f32)
            })
            .collect();
        let mv: Vec<f32> = tv
            .iter()
            .enumerate()
            .map(|(k, &v)| if k % 4 == 0 { v } else { 0.0 })
            .collect();
        let (t, m) = (Csr::from_dense(n, g, &tv), Csr::from_dense(n, g, &mv));
        let b = Some((&codes[..], 2));
        let perfect = evaluate_detail(&t, &m, &tv, b).unwrap();
        assert_eq!(perfect.n_genes_batch_effect, 3);
        for v in [
            perfect.median_pearson_gene_heldout,
            perfect.median_pearson_cell_heldout,
            perfect.batch_effect_r,
            perfect.batch_effect_slope,
        ] {
            assert!((v.unwrap() - 1.0).abs() < 1e-9, "{perfect:?}");
        }
        // Halving every value halves the batch effects: slope 0.5, correlations unchanged.
        let half: Vec<f32> = tv.iter().map(|v| 0.5 * v).collect();
        let r = evaluate_detail(&t, &m, &half, b).unwrap();
        assert!((r.batch_effect_slope.unwrap() - 0.5).abs() < 1e-6);
        assert!((r.batch_effect_r.unwrap() - 1.0).abs() < 1e-9);
        // A gene-mean fill has no batch effect and no held-out correlation per gene.
        let gm = impute_gene_mean(&m);
        let r = evaluate_detail(&t, &m, &gm, b).unwrap();
        assert_eq!(r.batch_effect_slope, Some(0.0));
        assert_eq!(r.batch_effect_r, None);
        assert_eq!(r.median_pearson_gene_heldout, None);
        assert!(r.median_pearson_cell_heldout.is_some());
        // Without batches (or with one): no batch-effect scores.
        let r = evaluate_detail(&t, &m, &tv, None).unwrap();
        assert_eq!((r.batch_effect_r, r.n_genes_batch_effect), (None, 0));
    }

    #[test]
    fn keep_observed_restores_bits() {
        let x = csr(&[&[0.1234567, 0.0], &[0.0, 7.654321]]);
        let mut y = vec![9.0; 4];
        keep_observed(&x, &mut y);
        assert_eq!(y, vec![0.1234567, 9.0, 9.0, 7.654321]);
    }
}
